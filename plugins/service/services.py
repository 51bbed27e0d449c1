"""Service domain logic; takes a session, never a Flask request."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Ticket


def list_tickets(session: Session, limit: int = 50) -> list[Ticket]:
    return list(session.scalars(select(Ticket).order_by(Ticket.id.desc()).limit(limit)))


def count_by_status(session: Session, status: str) -> int:
    return session.scalar(select(func.count()).select_from(Ticket).where(Ticket.status == status)) or 0
