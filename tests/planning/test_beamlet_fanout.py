"""Beamlets split into RQ sub-jobs, run by real worker processes on real Redis, merged back in plan order.

Case: the small water phantom of tests/support/cases.py, two beams (gantry 0 and 90),
220 spots in 12 layers, 6 mm scoring grid, 500 primaries per spot, MCsquare
on one thread: a single-process computation takes about 3 s.

"Equal within Monte Carlo noise" is measured, not assumed: MCsquare is not
deterministic (two single-process runs of this case differ by about 2 % RMS
per spot's integral dose), so the module computes the single-job matrix
twice and requires the split matrix to differ from the first no more than
1.5 times as much as the second does (the RMS of 220 per-spot ratios is
known to about 5 %, so 1.5 leaves room for chance and none for a real
error). Column order is checked separately by each spot's dose centroid:
one column off shifts them by 12 mm RMS (weighted by integral dose), noise
by about 1.2 mm; the per-spot integral dose ratio and the weighted dose of
that shifted matrix are 3.2 and 1.5 times the noise (measured once).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from redis import Redis
from rq import Queue
from rq.job import Job as RqJob

from orthanc_rt.errors import BeamletFanoutError
from orthanc_rt.scheduling.queue import Dispatcher
from tests.support import netns
from tests.support.beamlet_faults import fail_first_attempt
from tests.support.cases import small_phantom_case
from tests.support.opentps_plans import designed_plan
from tests.support.rq_workers import rq_workers
from worker.engines import beamlet_fanout
from worker.engines.beamlet_fanout import HEARTBEAT_TTL_S, DistributedBeamlets
from worker.engines.beamlet_parts import Part, part_count, part_plans, proton_plan, slice_plan, split_plan
from worker.engines.beamlets import ScenarioErrors, local_beamlets
from worker.engines.proton_dose import default_beam_model, scoring_grid, to_opentps_ct

PRIMARIES = 500
SPLIT_SPOTS = 80  # 220 spots: 3 parts
NOISE_FACTOR = 1.5


def phantom_inputs():
    """CT, plan, model and grid of the module's case (also used by the in-worker parent below)."""
    case = small_phantom_case("beamlet-fanout")
    plan = designed_plan(case, gantry=(0.0, 90.0), couch=(0.0, 0.0))
    return to_opentps_ct(case.ct_volume), plan, default_beam_model(), scoring_grid(case.ct_volume, 6.0)


def fanout_in_worker(redis_url: str, split_spots: int, work_dir: str, primaries: int = PRIMARIES) -> dict:
    """An RQ job standing in for a plan job: fans its beamlets out from inside a worker."""
    ct, plan, model, grid = phantom_inputs()
    runner = DistributedBeamlets(redis_url, split_spots=split_spots, part_timeout_s=600)
    nominal, _ = runner(ct, plan, model, grid, primaries=primaries, work_dir=Path(work_dir), threads=1)
    return {"matrix": nominal.toSparseMatrix(), "report": runner.last_report}


@pytest.fixture(scope="module")
def inputs():
    return phantom_inputs()


@pytest.fixture(scope="module")
def single_job(inputs, tmp_path_factory):
    """The single-process matrix, twice (the second run measures Monte Carlo noise)."""
    ct, plan, model, grid = inputs
    runs = []
    for k in range(2):
        nominal, _ = local_beamlets(ct, plan, model, grid, primaries=PRIMARIES,
                                    work_dir=tmp_path_factory.mktemp(f"single{k}"), threads=1)
        runs.append(sp.csc_matrix(nominal.toSparseMatrix()))
    return runs


def _column_sums(matrix: sp.spmatrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=0)).ravel()


def _centroids(matrix: sp.csc_matrix, grid) -> np.ndarray:
    """Each column's dose-weighted voxel centre (mm), from MCsquare's voxel index (Fortran order)."""
    index = np.arange(matrix.shape[0])
    ijk = np.stack(np.unravel_index(index, grid.size_xyz, order="F"), axis=1) * np.asarray(grid.spacing_mm)
    return np.asarray((matrix.T @ ijk) / _column_sums(matrix)[:, None])


def _centroid_shift(a: sp.csc_matrix, b: sp.csc_matrix, grid) -> float:
    """RMS distance (mm) between the columns' centroids, weighted by integral dose: the few spots at the edge
    that leave a handful of voxels above MCsquare's sparse threshold have noisy centroids and little weight."""
    distance = np.linalg.norm(_centroids(a, grid) - _centroids(b, grid), axis=1)
    weight = _column_sums(b)
    return float(np.sqrt(np.sum(weight * distance ** 2) / np.sum(weight)))


def _rms_ratio(a: sp.spmatrix, b: sp.spmatrix) -> float:
    return float(np.sqrt(np.mean((_column_sums(a) / _column_sums(b) - 1.0) ** 2)))


def _weighted_dose_rms(a: sp.spmatrix, b: sp.spmatrix) -> float:
    """RMS difference of the doses of one set of spot weights, relative to the dose maximum, where dose > 20 %."""
    weights = np.random.default_rng(3).uniform(0.5, 1.5, a.shape[1])
    da, db = a @ weights, b @ weights
    high = db > 0.2 * db.max()
    return float(np.sqrt(np.mean((da[high] - db[high]) ** 2)) / db.max())


def assert_equal_within_noise(split: sp.csc_matrix, single: list[sp.csc_matrix], grid) -> None:
    reference, second = single
    assert split.shape == reference.shape
    noise = _rms_ratio(second, reference)
    assert 0 < _rms_ratio(split, reference) <= NOISE_FACTOR * noise, (_rms_ratio(split, reference), noise)
    dose_noise = _weighted_dose_rms(second, reference)
    assert _weighted_dose_rms(split, reference) <= NOISE_FACTOR * dose_noise, \
        (_weighted_dose_rms(split, reference), dose_noise)
    moved, noise_moved = _centroid_shift(split, reference, grid), _centroid_shift(second, reference, grid)
    assert moved <= NOISE_FACTOR * noise_moved + 0.1 and moved < 0.5 * min(grid.spacing_mm), (moved, noise_moved)


def test_parts_are_contiguous_balanced_and_cover_the_plan():
    energies = np.concatenate([np.full(40, 150.0), np.full(60, 100.0), np.full(100, 70.0)])
    parts = split_plan(energies, 4)
    assert [p.index for p in parts] == [0, 1, 2, 3]
    assert parts[0].start == 0 and parts[-1].stop == len(energies)
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    cost = np.power(energies, 1.77)
    shares = np.array([cost[p.start:p.stop].sum() for p in parts]) / cost.sum()
    assert np.all(np.abs(shares - 0.25) < 0.02), shares
    assert parts[0].spots < parts[-1].spots  # high-energy spots cost more each
    assert split_plan(energies[:2], 5) == [Part(0, 0, 1), Part(1, 1, 2)]
    assert part_count(220, 80, 2) == 3 and part_count(220, 500, 2) == 2 and part_count(220, 80, 1) == 1
    assert part_count(3, 1, 8) == 3 and part_count(220, 80, 4) == 4


def test_part_plans_keep_every_spot_in_plan_order(inputs):
    _, plan, model, _ = inputs
    mu_before = np.array(plan.spotMUs)
    parts = split_plan(np.ones(plan.numberOfSpots), 3)
    plans = part_plans(plan, parts)
    np.testing.assert_array_equal(plan.spotMUs, mu_before)  # the caller's plan is left as it was
    assert [p.spot_count for p in plans] == [p.spots for p in parts]
    rebuilt = [proton_plan(p) for p in plans]
    xy = np.concatenate([np.asarray(p.spotXY) for p in rebuilt])
    energies = np.concatenate([[layer.nominalEnergy] * len(layer) for p in rebuilt for beam in p for layer in beam])
    gantry = np.concatenate([[beam.gantryAngle] * beam.numberOfSpots for p in rebuilt for beam in p])
    np.testing.assert_allclose(xy, np.asarray(plan.spotXY))
    np.testing.assert_allclose(energies, [l.nominalEnergy for b in plan for l in b for _ in range(len(l))])
    np.testing.assert_allclose(gantry, [b.gantryAngle for b in plan for _ in range(b.numberOfSpots)])
    assert all(np.all(np.asarray(p.spotMUs) == 1.0) for p in rebuilt)
    whole = slice_plan(plans[0], 0, plans[0].spot_count)
    assert whole.spot_count == plans[0].spot_count and slice_plan(plans[0], 0, 0).beams == []


@pytest.mark.physics
def test_split_matrix_equals_single_job_within_noise(inputs, single_job, redis_url, tmp_path):
    """(a) Two real workers and the parent share three parts; the merged matrix is the single-job matrix."""
    ct, plan, model, grid = inputs
    progress: list[float] = []
    with rq_workers(redis_url, 2, tmp_path / "stack", threads=1):
        runner = DistributedBeamlets(redis_url, split_spots=SPLIT_SPOTS, part_timeout_s=600)
        nominal, scenarios = runner(ct, plan, model, grid, primaries=PRIMARIES, work_dir=tmp_path / "parent",
                                    threads=1, on_progress=lambda done, _: progress.append(done))
    report = runner.last_report
    assert len(report.parts) == 3 and scenarios == []
    assert report.attempts == {0: 1, 1: 1, 2: 1}
    executors = {run["executor"] for run in report.runs}
    assert len(executors) >= 2, report.runs  # the work was shared (the workers take parts from the front)
    assert tuple(nominal.doseGridSize) == grid.size_xyz
    assert_equal_within_noise(sp.csc_matrix(nominal.toSparseMatrix()), single_job, grid)
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert list(Redis.from_url(redis_url).scan_iter("orthanc-rt:beamlets:*")) == []  # keys removed once read


@pytest.mark.physics
def test_a_failed_part_is_retried_alone(inputs, single_job, redis_url, tmp_path, monkeypatch):
    """(b) The first attempt of part 1 raises (in whichever process takes it); only part 1 runs again."""
    ct, plan, model, grid = inputs
    monkeypatch.setattr(beamlet_fanout, "part_hook", fail_first_attempt(1))  # the parent too, should it take part 1
    with rq_workers(redis_url, 2, tmp_path / "stack", threads=1, fail_part=1):
        runner = DistributedBeamlets(redis_url, split_spots=SPLIT_SPOTS, part_timeout_s=600)
        nominal, _ = runner(ct, plan, model, grid, primaries=PRIMARIES, work_dir=tmp_path / "parent", threads=1)
    report = runner.last_report
    assert report.attempts == {0: 2, 1: 1, 2: 1}, report.runs
    by_part = {k: [run for run in report.runs if run["part"] == k] for k in range(3)}
    assert [run["outcome"] for run in by_part[0]] == ["failed", "done"]
    assert [run["outcome"] for run in by_part[1]] == ["done"] and [run["outcome"] for run in by_part[2]] == ["done"]
    # Part 1 is first in the queue, so a worker met the fault and RQ's Retry queued it again.
    assert by_part[0][0]["executor"] != "plan job", report.runs
    assert by_part[0][1]["started"] >= by_part[0][0]["finished"]
    assert_equal_within_noise(sp.csc_matrix(nominal.toSparseMatrix()), single_job, grid)


@pytest.mark.physics
def test_a_part_that_keeps_failing_fails_the_plan_readably(inputs, redis_url, tmp_path, monkeypatch):
    ct, plan, model, grid = inputs
    monkeypatch.setattr(beamlet_fanout, "part_hook", fail_first_attempt(2))
    # Three executors planned for, none there: the plan job takes every part (as when the workers are busy).
    runner = DistributedBeamlets(redis_url, split_spots=SPLIT_SPOTS, part_timeout_s=600, retries=0, executors=3)
    with pytest.raises(BeamletFanoutError, match=r"beamlet part 2/3 \(spots \d+-\d+\) failed "
                                                                r"after 1 attempt\(s\).*fault injected"):
        runner(ct, plan, model, grid, primaries=PRIMARIES, work_dir=tmp_path / "parent", threads=1)
    queue = Queue(beamlet_fanout.QUEUE, connection=runner.redis)
    assert len(queue) == 0  # the parts not yet taken were withdrawn


def _run_in_worker(queue: Queue, *args) -> dict:
    job = queue.enqueue(fanout_in_worker, *args, job_timeout=600)
    deadline = time.monotonic() + 300
    while job.get_status(refresh=True) not in ("finished", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.get_status(refresh=True) == "finished", job.latest_result().exc_string
    return job.return_value()


@pytest.mark.physics
def test_a_plan_job_alone_computes_its_beamlets_as_before(inputs, single_job, redis_url, tmp_path):
    """(c) One worker, busy with the plan job itself: one part, computed right there (nothing waits)."""
    _, _, _, grid = inputs
    with rq_workers(redis_url, 1, tmp_path / "stack", threads=1):
        result = _run_in_worker(Queue("orthanc-rt-dose", connection=Redis.from_url(redis_url)), redis_url,
                                SPLIT_SPOTS, str(tmp_path / "parent"))
    report = result["report"]
    assert len(report.parts) == 1 and report.stolen == [0] and report.runs == []
    assert_equal_within_noise(sp.csc_matrix(result["matrix"]), single_job, grid)


@pytest.mark.physics
def test_a_plan_job_whose_colleague_is_busy_computes_every_part_itself(inputs, single_job, redis_url, tmp_path):
    """(c) Two workers, one busy with other work: the plan job's three parts would wait forever for it;
    the plan job takes them itself instead."""
    _, _, _, grid = inputs
    with rq_workers(redis_url, 2, tmp_path / "stack", threads=1):
        redis = Redis.from_url(redis_url)
        dose_queue = Queue("orthanc-rt-dose", connection=redis)
        busy = dose_queue.enqueue(time.sleep, 300, job_timeout=600)  # another long job, e.g. a dose
        deadline = time.monotonic() + 60
        while busy.get_status(refresh=True) != "started":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        try:
            result = _run_in_worker(dose_queue, redis_url, SPLIT_SPOTS, str(tmp_path / "parent"))
        finally:
            Dispatcher(redis_url, job_timeout_s=600).cancel(busy.id)
    report = result["report"]
    assert len(report.parts) == 3 and sorted(report.stolen) == [0, 1, 2]
    assert {run["executor"] for run in report.runs} == {"plan job"} and report.attempts == {0: 1, 1: 1, 2: 1}
    assert_equal_within_noise(sp.csc_matrix(result["matrix"]), single_job, grid)
    assert os.listdir(tmp_path / "parent") == []  # the parts' folders are removed once read


def _mcsquare_processes_below(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and "MCsquare" in os.readlink(proc / "exe") \
                    and Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.physics
def test_cancelling_the_plan_job_stops_its_parts_in_other_workers(redis_url, tmp_path):
    """The plan job is killed as a cancel kills it; the part another worker runs stops with its MCsquare."""
    with rq_workers(redis_url, 2, tmp_path / "stack", threads=1):
        redis = Redis.from_url(redis_url)
        parent = Queue("orthanc-rt-dose", connection=redis).enqueue(
            fanout_in_worker, redis_url, SPLIT_SPOTS, str(tmp_path / "parent"), 100_000, job_timeout=600)
        beamlets = Queue(beamlet_fanout.QUEUE, connection=redis)
        deadline = time.monotonic() + 120
        while not (beamlets.started_job_registry.get_job_ids() and _mcsquare_processes_below(tmp_path / "stack")):
            assert time.monotonic() < deadline, "no part started in the other worker"
            time.sleep(0.5)
        assert Dispatcher(redis_url, job_timeout_s=600).cancel(parent.id) == "stop sent to worker"
        cancelled = time.monotonic()
        # The parent's own worker, now free, may start a queued part before the heartbeat lapses: every part
        # must be over, and every MCsquare gone, within the heartbeat's lifetime and a few seconds.
        while beamlets.started_job_registry.get_job_ids() or _mcsquare_processes_below(tmp_path):
            assert time.monotonic() - cancelled < HEARTBEAT_TTL_S + 5, "parts still running"
            time.sleep(0.5)
        parts = [RqJob.fetch(key.decode().removeprefix("rq:job:"), connection=redis)
                 for key in redis.scan_iter("rq:job:beamlets-*")]
        outcomes = [part.return_value() for part in parts if part.get_status(refresh=True) == "finished"]
        # Parts of 100 000 primaries per spot last minutes: the one running when the heartbeat lapsed was stopped.
        assert {"cancelled": "the plan job is gone"} in outcomes, outcomes
        assert parent.get_status(refresh=True) == "stopped"


def test_settings_choose_the_runner(redis_url):
    from orthanc_rt.settings import Settings

    runner = beamlet_fanout.runner_for(Settings.from_env({"ORTHANC_RT_REDIS_URL": redis_url,
                                                          "ORTHANC_RT_BEAMLET_SPLIT_SPOTS": "64"}))
    assert isinstance(runner, DistributedBeamlets) and runner.split_spots == 64
    assert beamlet_fanout.runner_for(Settings.from_env({"ORTHANC_RT_DISTRIBUTED_BEAMLETS": "false"})) is None


@pytest.mark.physics
def test_a_part_failing_in_the_plan_job_goes_back_to_the_queue(inputs, single_job, redis_url, tmp_path,
                                                                monkeypatch):
    """No worker: the plan job takes the last part first, meets the fault, requeues it with one retry fewer."""
    ct, plan, model, grid = inputs
    monkeypatch.setattr(beamlet_fanout, "part_hook", fail_first_attempt(3))
    runner = DistributedBeamlets(redis_url, split_spots=SPLIT_SPOTS, part_timeout_s=600, executors=3)
    nominal, _ = runner(ct, plan, model, grid, primaries=PRIMARIES, work_dir=tmp_path / "parent", threads=1)
    report = runner.last_report
    assert report.attempts == {0: 1, 1: 1, 2: 2}
    assert [(run["part"], run["outcome"]) for run in report.runs] == [(2, "failed"), (2, "done"), (1, "done"),
                                                                      (0, "done")]
    assert_equal_within_noise(sp.csc_matrix(nominal.toSparseMatrix()), single_job, grid)


@pytest.mark.physics
def test_robust_scenarios_are_merged_scenario_by_scenario(inputs, redis_url, tmp_path):
    """Setup and range error scenarios: each part's scenario k joins the other parts' scenario k.

    40 spots of the first beam at 600 primaries (the 21 runs cost about 20
    times the nominal); a setup scenario moves the dose by 5 mm, so the dose
    centroid of each merged scenario must sit on that of the same scenario
    computed in one process. Noise: at 300 primaries one scenario's centres
    differed by 1.09 mm (CI); at 600 about 0.8 mm is expected, hence 1.5 mm, well below the 5 mm shift.
    """
    ct, plan, model, grid = inputs
    small = proton_plan(part_plans(plan, [Part(0, 0, 40), Part(1, 40, plan.numberOfSpots)])[0])
    errors = ScenarioErrors(setup_mm=5.0, range_pct=3.0)
    single_nominal, single_scenarios = local_beamlets(ct, small, model, grid, primaries=600,
                                                      work_dir=tmp_path / "single", threads=1, errors=errors)
    runner = DistributedBeamlets(redis_url, split_spots=20, part_timeout_s=600, executors=2)
    nominal, scenarios = runner(ct, small, model, grid, primaries=600, work_dir=tmp_path / "parent", threads=1,
                                errors=errors)
    assert len(runner.last_report.parts) == 2 and len(scenarios) == len(single_scenarios) >= 20
    weights = np.ones(40)
    single_centres = [_dose_centroid(b.toSparseMatrix() @ weights, grid) for b in (single_nominal, *single_scenarios)]
    split_centres = [_dose_centroid(b.toSparseMatrix() @ weights, grid) for b in (nominal, *scenarios)]
    spread = max(np.linalg.norm(c - single_centres[0]) for c in single_centres)
    assert spread >= 3.0  # the scenarios do differ
    for k, (split_centre, single_centre) in enumerate(zip(split_centres, single_centres)):
        assert np.linalg.norm(split_centre - single_centre) < 1.5, k


def _dose_centroid(dose: np.ndarray, grid) -> np.ndarray:
    index = np.arange(dose.size)
    ijk = np.stack(np.unravel_index(index, grid.size_xyz, order="F"), axis=1) * np.asarray(grid.spacing_mm)
    return (dose @ ijk) / dose.sum()


@pytest.mark.physics
def test_plan_impt_optimises_the_merged_beamlets(redis_url, tmp_path):
    """The whole planner with its beamlet stage spread over a real worker and the plan job."""
    from orthanc_rt.analysis.dvh_metrics import roi_dose_metrics
    from worker.planning.impt import STAGES, PlanRequest, plan_impt

    case = small_phantom_case("beamlet-fanout-plan")
    request = PlanRequest("TargetVolume", 2.0, beam_count=1, beamlet_primaries=1000, final_primaries=1_000_000)
    stages: list[tuple[str, float]] = []
    with rq_workers(redis_url, 1, tmp_path / "stack", threads=1):
        runner = DistributedBeamlets(redis_url, split_spots=100, part_timeout_s=600)
        result = plan_impt(case.ct_volume, {"TargetVolume": case.target_mask, "External": case.external_mask},
                           request, work_dir=tmp_path / "plan", threads=1, beamlet_runner=runner,
                           on_progress=lambda stage, fraction: stages.append((stage, fraction)))
    report = runner.last_report
    assert len(report.parts) >= 2 and len({run["executor"] for run in report.runs}) == 2, report.runs
    # What the optimiser made of the merged matrix (its beamlet-sum dose), then the final Monte Carlo dose,
    # which at 1e6 primaries is noisier (tests/planning/test_impt_phantom.py needs 4e6 for its 95 %).
    seen = roi_dose_metrics(result.optimizer_dose.dose_gy, case.target_mask)
    assert seen["D95"] >= 0.95 * 2.0 and seen["D5"] <= 1.07 * 2.0, seen
    qa = result.qa["TargetVolume"]
    assert qa["D95"] >= 0.88 * 2.0 and qa["D5"] <= 1.12 * 2.0, qa
    assert result.optimizer.objective_final < result.optimizer.objective_initial
    beamlet_progress = [fraction for stage, fraction in stages if stage == STAGES[1]]
    assert beamlet_progress == sorted(beamlet_progress) and beamlet_progress[-1] == 1.0


@pytest.mark.physics
@pytest.mark.timeout(240)  # a lost part would make the parent wait: fail instead
def test_a_worker_on_another_host_computes_parts_sharing_only_redis(inputs, single_job, redis_url, tmp_path):
    """Past one machine: a worker in a network namespace of its own, reaching nothing of this host but Redis
    (forwarded to it on the test network), in a mount namespace where /tmp and its data folder are empty tmpfs,
    so it sees neither the parent's work folder nor any file the parent wrote. It computes its share of the
    parts; the merged matrix equals the single-host one within Monte Carlo noise."""
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    ct, plan, model, grid = inputs
    with netns.isolated_host() as host:
        remote = netns.start_worker(host, redis_url, tmp_path / "remote", tmp_path / "remote-worker.log")
        runner = DistributedBeamlets(redis_url, split_spots=SPLIT_SPOTS, part_timeout_s=600, executors=3)
        nominal, _ = runner(ct, plan, model, grid, primaries=PRIMARIES, work_dir=tmp_path / "parent", threads=1)
    report = runner.last_report
    by = {run["part"]: run["executor"] for run in report.runs}
    assert remote in by.values(), report.runs  # the other host did its share
    assert len(report.parts) == 3 and sorted(set(by) | set(report.stolen)) == [0, 1, 2]
    assert_equal_within_noise(sp.csc_matrix(nominal.toSparseMatrix()), single_job, grid)
    assert not (tmp_path / "remote").exists()  # what it wrote stayed on its own disk
