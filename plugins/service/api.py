from flask_smorest import Blueprint

from host.db import session
from host.security.access import require

from . import services
from .schemas import TicketSchema

bp = Blueprint("api_service", __name__, description="Tickets.")


@bp.get("/tickets")
@require("service.ticket.read")
@bp.response(200, TicketSchema(many=True))
def list_tickets():
    """The newest tickets."""
    return services.list_tickets(session())
