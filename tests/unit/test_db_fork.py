"""Forked children (RQ's work-horses) get their own database connections, not their parent's."""
from __future__ import annotations

import os

from sqlalchemy import text

from orthanc_rt.records.db import session_scope


def _query_many_times(url: str, table: str) -> None:
    # psycopg prepares a statement on the server after a few executions, naming it by a per-connection
    # counter: two children forked from one parent connection both prepare "_pg3_0" on one server session.
    for _ in range(8):
        with session_scope(url) as s:
            s.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def _in_child(url: str) -> int:
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its queries worked
        code = 1
        try:
            _query_many_times(url, "measurements")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_work_horses_do_not_share_their_parents_connections(database_url):
    _query_many_times(database_url, "jobs")  # the parent holds a pooled connection, as a worker may
    assert [_in_child(database_url) for _ in range(3)] == [0, 0, 0]
    _query_many_times(database_url, "jobs")  # and the parent's own connection still works
