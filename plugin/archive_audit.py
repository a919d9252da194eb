"""The audit of Orthanc's own API: entries handed over by the request filter, written by one thread.

The filter (plugin/orthanc_access.py) runs on Orthanc's HTTP thread with the GIL held, before Orthanc
executes the request: it must neither wait for the database nor fail because the database is down.
So it only puts the entry on a bounded queue; this thread appends the entries, in order, to the
hash-chained trail (orthanc_rt/records/audit.py). An entry therefore means "requested by this user and
let through by the role table"; whether Orthanc then succeeded is in Orthanc's own change log.

While the database is unreachable the thread keeps the entries and tries again (1 s, doubling to 30 s);
each failure is logged. If the queue fills up (`capacity` entries waiting), further entries are written
to Orthanc's log, in full, instead of being kept: the request itself is never refused or delayed.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from orthanc_rt.records import audit

log = logging.getLogger("orthanc_rt.plugin")

_STOP = object()


class ArchiveAuditWriter:
    """`submit(actor, action, subject, details)` from any thread; `start()` once, `stop()` on shutdown."""

    def __init__(self, database_url: str, capacity: int = 10_000,
                 record: Callable[..., int] = audit.record, max_backoff_s: float = 30.0):
        self.database_url = database_url
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._record = record
        self._max_backoff_s = max_backoff_s
        self._thread = threading.Thread(target=self._run, name="orthanc-rt-archive-audit", daemon=True)
        self._stopping = threading.Event()
        self.written = 0
        self.overflowed = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        """Queue one entry; never blocks (a full queue sends the entry to the log instead)."""
        try:
            self._queue.put_nowait((actor, action, subject, details))
        except queue.Full:
            self.overflowed += 1
            log.error("audit queue full: entry not recorded in the audit trail: actor=%r action=%r subject=%r %r",
                      actor, action, subject, details)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (for at most `timeout_s`), then end the thread."""
        self._stopping.set()
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        left = self._queue.qsize()
        if left:
            log.error("Orthanc stopped with %d audit entries not yet written", left)

    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            backoff = 1.0
            while True:
                try:
                    actor, action, subject, details = item
                    self._record(self.database_url, actor, action, subject, None, details)
                    self.written += 1
                    break
                except Exception as exc:  # the database is down, or refuses: keep the entry, try again
                    if self._stopping.is_set():
                        log.error("audit entry not written at shutdown (%s): %r", type(exc).__name__, item)
                        break
                    log.error("audit trail unavailable (%s); retrying in %.0f s (%d entries waiting)",
                              type(exc).__name__, backoff, self._queue.qsize() + 1)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
