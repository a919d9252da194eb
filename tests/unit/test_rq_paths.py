"""RQ stores the path of the function it will call with every job: what happens to queued work on upgrade.

Database jobs keep their paths (worker.tasks.run_job / on_failure). Beamlet
parts moved (0.1 queued them as worker.beamlet_fanout.run_part): a worker
drops parts queued under another path at start-up, since their plan job died
with the old workers and fans out again when it is retried.
"""
from __future__ import annotations

from rq import Queue, SimpleWorker
from rq.utils import import_attribute

from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.scheduling import kinds
from orthanc_rt.scheduling.queue import ON_FAILURE, RUN_JOB, RUN_PART, redis_for
from tests.support.cases import beam, plan_of
from worker import tasks
from worker.__main__ import _drop_stranded_parts

RELEASED_RUN_PART = "worker.beamlet_fanout.run_part"  # Orthanc-RT 0.1


def test_entry_points_are_in_worker_tasks():
    assert [import_attribute(path) for path in (RUN_JOB, ON_FAILURE, RUN_PART)] == [
        tasks.run_job, tasks.on_failure, tasks.run_part]


def test_parts_of_an_earlier_version_are_dropped_and_todays_run(redis_url, tmp_path, monkeypatch):
    """The stranded part is gone before any worker tries it; today's part reaches its code (its plan job is gone,
    so it ends without computing)."""
    monkeypatch.setenv("ORTHANC_RT_REDIS_URL", redis_url)
    monkeypatch.setenv("ORTHANC_RT_WORK_DIR", str(tmp_path))
    redis = redis_for(redis_url)
    queue = Queue(kinds.BEAMLETS_QUEUE, connection=redis)
    part = read_ion_plan(plan_of([beam()]))  # pickled with the job, as a plan job's parts are
    old, new = (queue.enqueue(path, "gone-fanout", 0, part, job_id=f"beamlets-gone-{n}")
                for n, path in enumerate((RELEASED_RUN_PART, RUN_PART)))
    assert _drop_stranded_parts(redis) == [old.id]
    assert queue.job_ids == [new.id] and not queue.fetch_job(old.id)
    assert SimpleWorker([queue], connection=redis).work(burst=True)
    assert new.get_status(refresh=True) == "finished"
    assert new.return_value() == {"skipped": "the plan job is gone (cancelled, failed or finished)"}
