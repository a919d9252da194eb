"""Reactions to Orthanc's change feed: a table from (change type, SOP class) to trigger functions.

Runs on Orthanc's change thread, off the storage path. What each trigger does
is in `orthanc_rt.scheduling.triggers`; here is only which change reaches
which trigger, and the guarantee that no event takes the change thread down.
"""
from __future__ import annotations

import logging
import threading

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError

from orthanc_rt.errors import OrthancError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.resources import sop_class_of
from orthanc_rt.scheduling.triggers import Trigger, Triggers

log = logging.getLogger("orthanc_rt.plugin")

# A trigger that fails on one of these (the database or the queue is down) runs again when they are back.
_OUTAGES = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
# Changes kept for a replay; beyond this many, the plugin's maintenance walks the archive's plans again instead.
MISSED_CAPACITY = 100_000

# Change type names as in orthanc.ChangeType.
NEW_INSTANCE = "NEW_INSTANCE"
STABLE_SERIES = "STABLE_SERIES"

TriggerTable = dict[tuple[str, str | None], list[Trigger]]  # (change type, SOP class or None) -> triggers


def trigger_table(triggers: Triggers) -> TriggerTable:
    """Which triggers run on which change: instances by SOP class, series whatever they hold."""
    table: TriggerTable = {(NEW_INSTANCE, sop_class): found
                           for sop_class, found in triggers.for_new_instance().items()}
    table[(STABLE_SERIES, None)] = [triggers.series_stable]
    return table


class EventDispatcher:
    """Orthanc's one on-change callback hands every change here (only one can be registered)."""

    def __init__(self, orthanc: OrthancApi, table: TriggerTable):
        self.orthanc = orthanc
        self.table = table
        # Changes whose triggers depend on the SOP class: looked up once per event (Orthanc's index).
        self._by_sop_class = {change for change, sop_class in table if sop_class is not None}
        self._missed: dict[tuple[str, str], None] = {}  # in arrival order, each change once
        self._lock = threading.Lock()
        self.overflowed = False  # more changes were missed than kept: only a walk of the archive finds them

    def on_change(self, change: str, resource_id: str) -> None:
        """Run the triggers of one change event (names as in orthanc.ChangeType)."""
        try:
            sop_class = sop_class_of(self.orthanc, resource_id) if change in self._by_sop_class else None
            for trigger in self.table.get((change, sop_class), ()):
                trigger(resource_id)
        except _OUTAGES as exc:
            self._remember(change, resource_id, exc)
        except OrthancError as exc:
            if exc.status == 404:  # deleted before we looked: nothing to do
                return
            log.exception("Orthanc-RT could not handle %s %s", change, resource_id)
        except Exception:  # never let an event take the change thread down
            log.exception("Orthanc-RT could not handle %s %s", change, resource_id)

    def replay_missed(self) -> int:
        """Run again the changes whose triggers met an outage (each trigger is idempotent); returns how many.
        Those that meet it again are kept for the next replay."""
        with self._lock:
            missed, self._missed = list(self._missed), {}
        for change, resource_id in missed:
            self.on_change(change, resource_id)
        if missed:
            log.info("Orthanc-RT: ran again the triggers of %d changes missed during an outage (%d still waiting)",
                     len(missed), len(self._missed))
        return len(missed)

    def _remember(self, change: str, resource_id: str, exc: Exception) -> None:
        with self._lock:
            full = len(self._missed) >= MISSED_CAPACITY
            first_missed, first_overflow = not self._missed, full and not self.overflowed
            if full:
                self.overflowed = True
            else:
                self._missed[(change, resource_id)] = None
        if first_overflow:
            log.error("Orthanc-RT: more than %d changes missed during an outage: the plans stored meanwhile will be "
                      "found by a walk of the archive when it is over", MISSED_CAPACITY)
        elif first_missed:
            log.warning("Orthanc-RT: the database or the queue is unavailable (%s: %s): the triggers of %s %s, and of "
                        "every change until it is back, run again then", type(exc).__name__, exc, change, resource_id)
