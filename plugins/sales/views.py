from flask import Blueprint, render_template

from host.db import session
from host.security.access import require

from . import services

bp = Blueprint("sales", __name__, template_folder="templates", static_folder="static")


@bp.get("/")
@require("sales.deal.read")
def index():
    return render_template("sales/index.html", deals=services.list_deals(session()))
