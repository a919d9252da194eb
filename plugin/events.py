"""Reactions to Orthanc's change feed: a table from (change type, SOP class) to trigger functions.

Runs on Orthanc's change thread, off the storage path. What each trigger does
is in `orthanc_rt.scheduling.triggers`; here is only which change reaches
which trigger, and the guarantee that no event takes the change thread down.
"""
from __future__ import annotations

import logging

from orthanc_rt.errors import OrthancError
from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.resources import sop_class_of
from orthanc_rt.scheduling.triggers import Trigger, Triggers

log = logging.getLogger("orthanc_rt.plugin")

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

    def on_change(self, change: str, resource_id: str) -> None:
        """Run the triggers of one change event (names as in orthanc.ChangeType)."""
        try:
            sop_class = sop_class_of(self.orthanc, resource_id) if change in self._by_sop_class else None
            for trigger in self.table.get((change, sop_class), ()):
                trigger(resource_id)
        except OrthancError as exc:
            if exc.status == 404:  # deleted before we looked: nothing to do
                return
            log.exception("Orthanc-RT could not handle %s %s", change, resource_id)
        except Exception:  # never let an event take the change thread down
            log.exception("Orthanc-RT could not handle %s %s", change, resource_id)
