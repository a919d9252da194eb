"""A job's progress and ETA in its database row: the ETA follows the current stage's own rate and never freezes."""
from __future__ import annotations

import pytest

from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job
from worker.engines import mcsquare
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


def test_a_run_to_an_uncertainty_reports_progress_from_the_uncertainty_it_reached():
    config = mcsquare.uncertainty_config(10_000_000, 1.0)
    assert config == {"Stat_uncertainty": 1.0, "Num_Primaries": 200_000, "Max_Num_Primaries": 10_000_000}
    stop = mcsquare.UncertaintyStop(goal_pct=1.0, batches_at_cap=10 * 10_000_000 / 200_000)
    log = "Simulation started\nbatch 1 completed \nbatch 2 completed \n"
    assert mcsquare.progress_from_log(log, stop) == pytest.approx(2 / 500)  # before any estimate: towards the cap
    log += "".join(f"batch {k} completed (stat uncertainty: {u:.2f} %) \n" for k, u in ((5, 4.0), (6, 2.0)))
    assert mcsquare.progress_from_log(log, stop) == pytest.approx(0.25)  # (1 / 2)^2: a quarter of the primaries
    assert mcsquare.progress_from_log(log) is None  # without the stop these lines are no percentage
