"""Fixed-window rate limits that hold across processes.

Counters live in Redis when ``MOSAIC_REDIS_URL`` is set, else in the
``rate_limit_counter`` table, never in process memory (several app processes
must see the same count).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from host.db import utcnow

from .models import RateLimitCounter


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    limit: int
    #: Seconds until the window ends (for ``Retry-After``).
    retry_after: int


class RateLimiter:
    def __init__(self, db, redis_url: str | None = None):
        self.db = db
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url)

    @staticmethod
    def _window(window_seconds: int, now: float) -> tuple[int, int]:
        index = int(now // window_seconds)
        retry = max(1, math.ceil((index + 1) * window_seconds - now))
        return index, retry

    def hit(self, key: str, limit: int, window_seconds: int, now: float | None = None) -> Decision:
        """Count one event for ``key``; allowed while the count stays within ``limit``."""
        now = time.time() if now is None else now
        index, retry = self._window(window_seconds, now)
        count = self._incr(key, index, window_seconds, 1)
        return Decision(count <= limit, count, limit, retry)

    def peek(self, key: str, limit: int, window_seconds: int, now: float | None = None) -> Decision:
        """The current count without adding to it (check before doing work)."""
        now = time.time() if now is None else now
        index, retry = self._window(window_seconds, now)
        count = self._incr(key, index, window_seconds, 0)
        return Decision(count < limit, count, limit, retry)

    def release(self, key: str, window_seconds: int, now: float | None = None) -> None:
        """Take back one event counted by ``hit`` at ``now`` (the same window:
        pass the ``now`` given to ``hit``, so a window boundary in between
        cannot leave a negative count in the next one)."""
        now = time.time() if now is None else now
        index, _ = self._window(window_seconds, now)
        self._incr(key, index, window_seconds, -1)

    def reset(self, key: str, window_seconds: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        index, _ = self._window(window_seconds, now)
        if self._redis is not None:
            self._redis.delete(f"mosaic:rl:{key}:{index}")
            return
        with self.db.transaction() as session:
            session.execute(delete(RateLimitCounter).where(RateLimitCounter.key == key, RateLimitCounter.window == index))

    def _incr(self, key: str, index: int, window_seconds: int, amount: int) -> int:
        if self._redis is not None:
            name = f"mosaic:rl:{key}:{index}"
            if amount == 0:
                return int(self._redis.get(name) or 0)
            pipe = self._redis.pipeline()
            pipe.incrby(name, amount)
            pipe.expire(name, window_seconds + 5)
            return int(pipe.execute()[0])
        return self._incr_sql(key, index, window_seconds, amount)

    def _incr_sql(self, key: str, index: int, window_seconds: int, amount: int) -> int:
        # Reading needs no write lock; counting takes it briefly. Callers must
        # not hold a write transaction of their own on SQLite meanwhile.
        with self.db.transaction(write=amount != 0) as session:
            if amount == 0:
                found = session.scalar(
                    select(RateLimitCounter.count).where(RateLimitCounter.key == key, RateLimitCounter.window == index)
                )
                return int(found or 0)
            insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
            expires = utcnow() + dt.timedelta(seconds=window_seconds + 5)
            stmt = insert(RateLimitCounter).values(key=key, window=index, count=amount, expires_at=expires)
            stmt = stmt.on_conflict_do_update(
                index_elements=["key", "window"], set_={"count": RateLimitCounter.count + amount}
            ).returning(RateLimitCounter.count)
            return int(session.execute(stmt).scalar_one())

    def purge_expired(self) -> int:
        """Delete finished windows (run from a periodic job)."""
        if self._redis is not None:
            return 0
        with self.db.transaction() as session:
            result = session.execute(delete(RateLimitCounter).where(RateLimitCounter.expires_at < utcnow()))
            return result.rowcount or 0
