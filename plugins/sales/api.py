from flask_smorest import Blueprint

from host.db import session
from host.security.access import require

from . import services
from .schemas import DealSchema

bp = Blueprint("api_sales", __name__, description="Deals in the sales pipeline.")


@bp.get("/deals")
@require("sales.deal.read")
@bp.response(200, DealSchema(many=True))
def list_deals():
    """The newest deals."""
    return services.list_deals(session())
