from flask import Blueprint, render_template

from host.db import session
from host.security.access import require

from . import services

bp = Blueprint("service", __name__, template_folder="templates", static_folder="static")


@bp.get("/")
@require("service.ticket.read")
def index():
    return render_template("service/index.html", items=services.list_tickets(session()))
