from flask_smorest import Blueprint

from host.db import session
from host.security.access import require

from . import services
from .schemas import CampaignSchema

bp = Blueprint("api_marketing", __name__, description="Campaigns.")


@bp.get("/campaigns")
@require("marketing.campaign.read")
@bp.response(200, CampaignSchema(many=True))
def list_campaigns():
    """The newest campaigns."""
    return services.list_campaigns(session())
