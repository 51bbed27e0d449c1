from flask import Blueprint, render_template

from host.db import session
from host.security.access import require

from . import services

bp = Blueprint("marketing", __name__, template_folder="templates", static_folder="static")


@bp.get("/")
@require("marketing.campaign.read")
def index():
    return render_template("marketing/index.html", items=services.list_campaigns(session()))
