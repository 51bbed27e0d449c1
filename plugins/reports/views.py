from flask import Blueprint, render_template

from host.db import session
from host.security.access import require

from . import services

bp = Blueprint("reports", __name__, template_folder="templates", static_folder="static")


@bp.get("/")
@require("reports.report.read")
def index():
    return render_template("reports/index.html", items=services.list_reports(session()))
