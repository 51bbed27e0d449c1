"""Database: one declarative base, engines and sessions per app.

SQLite (the embedded default) gets WAL, a busy timeout and foreign keys on every
connection. A session that will write can ask for ``BEGIN IMMEDIATE`` so a
request and a job thread never deadlock on SQLite's lock upgrade.
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from flask import current_app, g, has_app_context
from sqlalchemy import ARRAY, JSON, DateTime, MetaData, any_, bindparam, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 10_000
#: A pooled PostgreSQL connection idle for longer than this is tested before use.
PING_AFTER_IDLE_S = 5.0
_IDLE_SINCE = "mosaic_idle_since"


class Base(DeclarativeBase):
    """The one declarative base of the host and every plugin."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def is_among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` for a long list (a batch of an import's keys).
    On PostgreSQL ``column = ANY(:values)``: one array parameter, where
    ``IN`` makes SQLAlchemy expand one parameter per value and psycopg parse
    the statement anew each time (it caches only statements of up to 50
    parameters): 500 e-mails looked up in 3 ms instead of 10. The planner
    treats both alike. Elsewhere ``IN``."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Statement parameters hold personal data and password hashes; errors
    # and logs show the SQL without them unless a caller asks.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    is_postgresql = url.startswith("postgresql")
    engine = create_engine(url, pool_pre_ping=not is_postgresql, **kwargs)
    if engine.dialect.name == "postgresql":
        _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn, _record):
        # With the default (spinning-disk) page cost, "newest 50 rows of one
        # owner" walks the primary key backwards instead of using the
        # (owner_id, id) index: 55 ms instead of 0.08 ms at 100k rows.
        # 1.1 is the usual setting for SSDs; a DBA may still override it.
        with dbapi_conn.cursor() as cur:
            cur.execute("SET random_page_cost = 1.1")
        dbapi_conn.commit()

    # Instead of pool_pre_ping's round trip on every checkout (three per API
    # request: token lookup, rate limit, the request), test only a connection
    # that sat idle, where a server restart or an idle timeout may have cut
    # it. A connection that breaks while in steady use fails its statement;
    # SQLAlchemy then drops the pool's connections, so the next request
    # reconnects.
    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_conn, record):
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_conn, record, _proxy):
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # new, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise InvalidatePoolError(f"an idle connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins, so
        # ``BEGIN IMMEDIATE`` can be issued for writing sessions.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        immediate = conn.get_execution_options().get("mosaic_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The engine and session factories of one app."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        # Writers take SQLite's write lock up front; on PostgreSQL it is the same engine.
        writer_bind = self.engine.execution_options(mosaic_immediate=True) if self.is_sqlite else self.engine
        self.WriteSession = sessionmaker(writer_bind, expire_on_commit=False)

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Session]:
        """A session in a transaction, committed on success, rolled back on error."""
        factory = self.WriteSession if write else self.Session
        with factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def get_db() -> Database:
    return current_app.extensions["mosaic"].db


def session() -> Session:
    """The request's session (opened on first use, closed at teardown).

    Requests that may change data (POST, PUT, PATCH, DELETE) get a writing
    session. Commit explicitly; an uncommitted session is rolled back."""
    if "mosaic_session" not in g:
        from flask import request, has_request_context

        db = get_db()
        write = has_request_context() and request.method not in ("GET", "HEAD", "OPTIONS")
        g.mosaic_session = (db.WriteSession if write else db.Session)()
    return g.mosaic_session


def close_session(_exc: BaseException | None = None) -> None:
    if has_app_context():
        sess = g.pop("mosaic_session", None)
        if sess is not None:
            sess.close()


def host_models() -> list[type]:
    """The host's own mapped classes (plugins' models live outside ``host.``)."""
    return [m.class_ for m in Base.registry.mappers if m.class_.__module__.startswith("host.")]
