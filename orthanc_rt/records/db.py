"""Engine and sessions for PostgreSQL (psycopg 3) or the default SQLite file."""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import Select, create_engine, event, func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"
_CREATED: list[Engine] = []  # every engine of this process, for _forget_pools_after_fork


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` URLs (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    engine = _create_engine(url)
    _CREATED.append(engine)
    return engine


def _forget_pools_after_fork() -> None:
    """In a forked child (RQ's work-horse), leave the parent's pooled connections to the parent.

    Two processes on one PostgreSQL connection corrupt its session: the worker's
    parent process opens connections when it records the failure of a job whose
    work-horse died, and every later work-horse then reused that socket (seen:
    psycopg's "prepared statement _pg3_0 already exists"). SQLAlchemy's
    dispose(close=False) gives the child fresh pools without closing the
    parent's connections.
    """
    for engine in _CREATED:
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pools_after_fork)


PG_CONNECT_TIMEOUT_S = 10


def _create_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Orthanc's threads, the plugin's helper thread and several workers share the file.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A server that does not answer (a host down, a dropped route) is an error after 10 s, not after the
    # operating system's TCP timeout of minutes: the plugin's threads and the workers must go on.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                         connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on error."""
    factory = sessionmaker(engine_for(url), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@lru_cache(maxsize=8)
def _autocommit_engine(url: str) -> Engine:
    return engine_for(url).execution_options(isolation_level="AUTOCOMMIT")  # same pool, same connections


@contextmanager
def read_scope(url: str) -> Iterator[Session]:
    """A session for reads that each fit in one statement: no BEGIN/COMMIT round trips around them.

    Every statement sees its own snapshot, so put what must agree (a page and its total) into one
    statement (see paged()).
    """
    session = Session(_autocommit_engine(url), expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()


# From this offset on, a page is found on its index alone and only its own rows are read from the table:
# otherwise PostgreSQL reads every skipped row too (bench/rest_latency.py: 40-60% less time at offset 7000).
DEFERRED_JOIN_OFFSET = 500


def paged(session: Session, stmt: Select, order: Sequence[Any], limit: int, offset: int) -> tuple[list[Any], int]:
    """One page of the ORM entities `stmt` selects and the total it matches, in one round trip.

    A statement selecting one entity gives a list of entities; one selecting several (an outer join
    such as plans with their jobs) gives a list of tuples, keyed on the first entity. `order` must end
    with the first entity's primary key, so pages are stable. The total rides along as a scalar
    subquery (evaluated once); only a page past the end, which has no row to carry it, needs a
    second query.
    """
    total_of = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = total_of.scalar_subquery().label("total")
    page = stmt.add_columns(total)
    if offset >= DEFERRED_JOIN_OFFSET:
        key = inspect(stmt.column_descriptions[0]["entity"]).primary_key[0]
        keys = stmt.with_only_columns(key).order_by(*order).limit(limit).offset(offset).subquery()
        result = session.execute(page.join(keys, key == keys.c[key.name]).order_by(*order)).all()
    else:
        result = session.execute(page.order_by(*order).limit(limit).offset(offset)).all()
    if result:
        width = len(stmt.column_descriptions)
        return [row[0] if width == 1 else tuple(row[:width]) for row in result], int(result[0][-1])
    return [], int(session.scalar(total_of) or 0) if offset else 0


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema with Alembic (the only way tables are made)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection_url"] = normalize_url(url)
    command.upgrade(cfg, revision)
