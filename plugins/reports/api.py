from flask_smorest import Blueprint

from host.db import session
from host.security.access import require

from . import services
from .schemas import SavedReportSchema

bp = Blueprint("api_reports", __name__, description="Saved reports.")


@bp.get("/reports")
@require("reports.report.read")
@bp.response(200, SavedReportSchema(many=True))
def list_reports():
    """The newest saved reports."""
    return services.list_reports(session())
