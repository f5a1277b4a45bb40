"""The database: engine, sessions and Alembic migrations applied at start-up."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, Select, create_engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - driver hook
            cursor = dbapi_connection.cursor()
            # WAL lets the web process read while a worker writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


_engines: dict[str, Engine] = {}


@functools.cache
def _sessionmaker(url: str) -> sessionmaker[Session]:
    _engines[url] = make_engine(url)
    return sessionmaker(_engines[url], expire_on_commit=False)


def sessions(url: str) -> sessionmaker[Session]:
    """The session factory for a database URL (one engine per URL and process)."""
    return _sessionmaker(url)


@contextlib.contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = sessions(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def paginate(session: Session, query: Select, *order, limit: int, offset: int) -> tuple[list, int]:
    """One page of a query's rows, and how many rows there are in all."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
    return list(rows), total


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest migration (safe to run on every start)."""
    command.upgrade(alembic_config(url), "head")


def dispose_all() -> None:
    """Close every pooled connection and forget the engines (tests; before forking)."""
    for url in list(_engines):
        _engines.pop(url).dispose()
    _sessionmaker.cache_clear()
