"""The plugin's one background thread: reconcile at start-up, then keep the job queue honest."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.scheduling.origin import foreign_ion_plans
from orthanc_rt.scheduling.reconcile import reconcile
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.scheduling.triggers import Triggers
from orthanc_rt.settings import Settings
from plugin.events import EventDispatcher

log = logging.getLogger("orthanc_rt.plugin")

PERIOD_S = 10.0


class Maintenance(threading.Thread):
    """Walks the archive's plans once at start-up (reconcile, dose checks), then every PERIOD_S pushes triggers
    recorded while Redis was down, fails waits that ran out, reruns jobs an outage failed and runs again the
    triggers an outage made fail. Started on ORTHANC_STARTED: the walk needs Orthanc's REST API.

    Orthanc-RT starts without its database (an operator restarting both, PostgreSQL last): `prepare` (the
    schema and the configuration's audit entry) is then tried here until it succeeds, and nothing else runs
    before it has. Each step is tried again the next period when it fails."""

    def __init__(self, orthanc: OrthancApi, scheduler: Scheduler, settings: Settings,
                 triggers: Triggers | None = None, events: EventDispatcher | None = None,
                 prepare: Callable[[], None] | None = None):
        super().__init__(name="orthanc-rt-maintenance", daemon=True)
        self.orthanc = orthanc
        self.scheduler = scheduler
        self.settings = settings
        self.triggers = triggers
        self.events = events
        self.prepare = prepare
        self.stopped = threading.Event()

    def run(self) -> None:
        prepared, walked = self.prepare is None, False
        while True:
            if not prepared:
                prepared = self._attempt("database preparation", self.prepare)
            if prepared:
                walked = walked or self._attempt("start-up reconcile", self._startup)
                self._attempt("maintenance", self._period)
                if self.events is not None:
                    self._attempt("replaying missed triggers", self.events.replay_missed)
                    if self.events.overflowed:  # too many missed to keep: walk the archive again
                        self.events.overflowed, walked = False, False
            if self.stopped.wait(PERIOD_S):
                return

    def _period(self) -> None:
        self.scheduler.flush_pending()
        self.scheduler.repush_lost()
        self.scheduler.expire_waiting()
        self.scheduler.resume_checks_of_finished_recomputes()
        self.scheduler.rerun_after_outages()

    @staticmethod
    def _attempt(what: str, step: Callable[[], object]) -> bool:
        try:
            step()
            return True
        except Exception as exc:  # Orthanc, Redis or the database down: the next period tries again
            log.warning("Orthanc-RT %s: %s: %s", what, type(exc).__name__, exc)
            return False

    def _startup(self) -> None:
        # Plans stored while Orthanc-RT was not running get their job (idempotent: see reconcile.py), and TPS
        # exports their dose check; one walk over the archive's plans serves both.
        plans = foreign_ion_plans(self.orthanc, self.scheduler.store)
        if self.triggers is not None:  # only those whose uploader may start Monte Carlo (OrthancRT.AutoComputeFrom)
            plans = self.triggers.computable(plans)
        if self.settings.auto_dose.enabled:
            reconcile(self.orthanc, self.scheduler, self.settings.auto_dose, actor="startup-reconcile", plans=plans)
        if self.triggers is not None:
            self.triggers.check_stored_plans(plans)
