from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from host.db import Base, UTCDateTime, utcnow

DEAL_STAGES = ("new", "qualified", "proposal", "negotiation", "won", "lost")


class Deal(Base):
    __tablename__ = "sales_deal"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(20), default="new", index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
