"""The host's own dashboard widgets, so the dashboard is useful with no
plugin enabled: the user's open tasks (overdue, due today) and the recent
interactions they may see, with a chart of the last seven days.

Each query carries the record scope (``scope_condition``) and leaves the
recycle bin out; a widget is offered only to users holding its permission.
"""

from __future__ import annotations

import datetime as dt

from flask import render_template
from flask_babel import format_date, gettext
from markupsafe import Markup
from sqlalchemy import func, select

from hooks import Widget
from host.core.models import Contact, Interaction, Task
from host.db import session as db_session
from host.db import utcnow
from host.security.access import Principal, current_principal, scope_condition

from . import labels, svg

RECENT = 5
CHART_DAYS = 7


def task_counts(session, principal: Principal, now: dt.datetime) -> dict[str, int]:
    """The principal's own open tasks: all, overdue, due by the end of today (UTC)."""
    end_of_day = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=now.tzinfo)
    base = [Task.owner_id == principal.user_id, Task.done.is_(False), Task.deleted_at.is_(None),
            scope_condition(principal, Task)]

    def count(*extra) -> int:
        return session.scalar(select(func.count()).select_from(Task).where(*base, *extra)) or 0

    return {
        "open": count(),
        "overdue": count(Task.due_at < now),
        "today": count(Task.due_at >= now, Task.due_at < end_of_day),
    }


def recent_interactions(session, principal: Principal, limit: int = RECENT) -> list[tuple[Interaction, str]]:
    stmt = (
        select(Interaction, Contact.name)
        .join(Contact, Contact.id == Interaction.contact_id)
        .where(Interaction.deleted_at.is_(None), Contact.deleted_at.is_(None),
               scope_condition(principal, Interaction), scope_condition(principal, Contact))
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(limit)
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


def interactions_per_day(session, principal: Principal, today: dt.date, days: int = CHART_DAYS) -> list[tuple[dt.date, int]]:
    """Interactions the principal may see per UTC day, oldest first, zeros included."""
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.timezone.utc)
    day = func.date(Interaction.occurred_at)
    stmt = (
        select(day, func.count())
        .where(Interaction.occurred_at >= start, Interaction.deleted_at.is_(None), scope_condition(principal, Interaction))
        .group_by(day)
    )
    counts = {str(found): n for found, n in session.execute(stmt)}
    return [(first + dt.timedelta(days=i), counts.get(str(first + dt.timedelta(days=i)), 0)) for i in range(days)]


def host_widgets(user) -> list[Widget]:
    principal = current_principal()
    if principal.user_id is None:
        return []
    session = db_session()
    now = utcnow()
    widgets = []
    if principal.can("core.task.read"):
        html = Markup(render_template("core/widgets/tasks.html", counts=task_counts(session, principal, now)))
        widgets.append(Widget(key="core.my_tasks", title=gettext("My open tasks"), html=html, order=10))
    if principal.can("core.interaction.read"):
        series = interactions_per_day(session, principal, now.date())
        chart = svg.bar_chart(
            gettext("Interactions in the last 7 days"),
            [format_date(day, "EEE") for day, _n in series],
            [n for _day, n in series],
        )
        html = Markup(render_template("core/widgets/interactions.html", recent=recent_interactions(session, principal),
                                           chart=chart, channels=labels.channels()))
        widgets.append(Widget(key="core.recent_interactions", title=gettext("Recent interactions"), html=html, order=20))
    return widgets
