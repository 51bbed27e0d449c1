"""Reports domain logic; takes a session, never a Flask request."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import SavedReport


def list_reports(session: Session, limit: int = 50) -> list[SavedReport]:
    return list(session.scalars(select(SavedReport).order_by(SavedReport.id.desc()).limit(limit)))


def count_by_status(session: Session, status: str) -> int:
    return session.scalar(select(func.count()).select_from(SavedReport).where(SavedReport.status == status)) or 0
