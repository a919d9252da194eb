"""The plugin's one background thread: reconcile at start-up, then keep the job queue honest."""
from __future__ import annotations

import logging
import threading

from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.scheduling.origin import foreign_ion_plans
from orthanc_rt.scheduling.reconcile import reconcile
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.scheduling.triggers import Triggers
from orthanc_rt.settings import Settings

log = logging.getLogger("orthanc_rt.plugin")

PERIOD_S = 10.0


class Maintenance(threading.Thread):
    """Reconciles once at start-up, then pushes triggers recorded while Redis was down and fails
    waits that ran out. Started on ORTHANC_STARTED: the start-up reconcile needs Orthanc's REST API."""

    def __init__(self, orthanc: OrthancApi, scheduler: Scheduler, settings: Settings,
                 triggers: Triggers | None = None):
        super().__init__(name="orthanc-rt-maintenance", daemon=True)
        self.orthanc = orthanc
        self.scheduler = scheduler
        self.settings = settings
        self.triggers = triggers
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            self._startup()
        except Exception as exc:  # Orthanc/Redis/DB trouble: the route can be called later
            log.warning("Orthanc-RT start-up reconcile failed: %s: %s", type(exc).__name__, exc)
        while not self.stopped.wait(PERIOD_S):
            try:
                self.scheduler.flush_pending()
                self.scheduler.repush_lost()
                self.scheduler.expire_waiting()
                self.scheduler.resume_checks_of_finished_recomputes()
                self.scheduler.rerun_after_outages()
            except Exception as exc:  # Redis/DB down: try again next period
                log.warning("Orthanc-RT maintenance: %s: %s", type(exc).__name__, exc)

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
