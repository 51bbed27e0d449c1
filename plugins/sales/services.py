"""Sales domain logic; takes a session, never a Flask request."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hooks import Event
from host.events import publish

from .models import Deal


def list_deals(session: Session, limit: int = 50) -> list[Deal]:
    return list(session.scalars(select(Deal).order_by(Deal.id.desc()).limit(limit)))


def open_pipeline_total(session: Session) -> Decimal:
    total = session.scalar(select(func.coalesce(func.sum(Deal.amount), 0)).where(Deal.stage.not_in(("won", "lost"))))
    return Decimal(total or 0)


def create_deal(session: Session, title: str, amount: Decimal, stage: str = "new") -> Deal:
    deal = Deal(title=title, amount=amount, stage=stage)
    session.add(deal)
    session.flush()
    publish(session, Event(type="deal.created", data={"id": deal.id, "title": title}, source="sales"))
    return deal
