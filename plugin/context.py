"""What the route modules and the triggers share: Orthanc, the settings, the stores and the scheduler.

Built once by the glue (or a test) and handed to every route module, so no
route module needs another to reach a store.
"""
from __future__ import annotations

from dataclasses import dataclass

from orthanc_rt.pacs.client import OrthancApi
from orthanc_rt.pacs.structure_sets import StructureSetIndex
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.measurements import MeasurementStore
from orthanc_rt.records.plans import PlanStore
from orthanc_rt.scheduling.params import AutoComputeFrom, CheckConfig
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.scheduling.submission import PlanSubmitter
from orthanc_rt.settings import Settings


@dataclass(frozen=True)
class Context:
    orthanc: OrthancApi
    settings: Settings
    store: JobStore
    dispatcher: Dispatcher
    scheduler: Scheduler
    measurements: MeasurementStore
    plans: PlanStore
    index: StructureSetIndex  # structure sets of a study, cached: shared by the plan routes and the triggers
    submitter: PlanSubmitter
    checks: CheckStore
    check_config: CheckConfig  # OrthancRT.DoseCheck, parsed once (the settings are frozen)
    compute_from: AutoComputeFrom  # OrthancRT.AutoComputeFrom, parsed once

    @classmethod
    def create(cls, orthanc: OrthancApi, settings: Settings, store: JobStore, dispatcher: Dispatcher) -> "Context":
        scheduler = Scheduler(store, dispatcher)
        plans = PlanStore(store.url)
        index = StructureSetIndex(orthanc)
        return cls(orthanc=orthanc, settings=settings, store=store, dispatcher=dispatcher, scheduler=scheduler,
                   measurements=MeasurementStore(store.url), plans=plans, index=index,
                   submitter=PlanSubmitter(index, plans, scheduler), checks=CheckStore(store.url),
                   check_config=CheckConfig.of(settings), compute_from=AutoComputeFrom.of(settings))
