"""A job's progress and ETA in its database row: the ETA follows the current stage's own rate and never freezes."""
from __future__ import annotations

import pytest

from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job
from worker.jobs.plan import STAGES
from worker.jobs.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _running_plan(url: str) -> JobStore:
    store = JobStore(url)
    store.create(Job(id="plan-a", kind="plan", state=jobs.QUEUED, stage="queued", params={}, inputs={}, outputs={},
                     source="api", requested_by="alice"), actor="alice")
    store.start("plan-a", actor="worker-1")
    return store


def test_a_slow_stage_gets_an_eta_from_its_own_rate_and_a_stalled_one_a_growing_eta(database_url):
    store, clock = _running_plan(database_url), Clock()
    progress = Progress(store, "plan-a", STAGES, clock=clock)
    progress.enter("fetching")
    clock.now += 20
    progress.enter("building plan")
    clock.now += 10
    progress.enter("computing beamlets")
    clock.now += 600  # a 7,000-spot plan: 10 minutes for the first 20 % of its beamlets
    progress.within(0.2)
    job = store.get("plan-a")
    assert job.stage == "computing beamlets" and job.progress == pytest.approx(0.08 + 0.47 * 0.2)
    # 2,400 s more for the beamlets, then the rest at the pace so far: far from the 36 s the stage shares alone gave.
    stage_left = 600 * 0.8 / 0.2
    assert job.eta_seconds == pytest.approx(stage_left + 0.45 * (630 + stage_left) / 0.55)
    clock.now += 300  # no news from MCsquare for 5 minutes, said again: the ETA grows
    progress.within(0.2)
    assert store.get("plan-a").eta_seconds > job.eta_seconds
    clock.now += 1  # throttled: one write per 2 s at most
    progress.within(0.9)
    assert store.get("plan-a").progress == pytest.approx(job.progress)
