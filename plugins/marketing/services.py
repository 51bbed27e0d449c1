"""Marketing domain logic; takes a session, never a Flask request."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Campaign


def list_campaigns(session: Session, limit: int = 50) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


def count_by_status(session: Session, status: str) -> int:
    return session.scalar(select(func.count()).select_from(Campaign).where(Campaign.status == status)) or 0
