"""RQ stores the path of the function it will call with every job: the paths of queued work keep resolving.

Beamlet parts were enqueued as worker.engines.beamlet_fanout.run_part before
worker.tasks held every entry point; parts an older plan job left queued must
still run after an upgrade.
"""
from __future__ import annotations

from rq import Queue, SimpleWorker
from rq.utils import import_attribute

from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.scheduling import kinds
from orthanc_rt.scheduling.queue import FORMER_RUN_PART, ON_FAILURE, RUN_JOB, RUN_PART, redis_for
from tests.support.cases import beam, plan_of
from worker import tasks


def test_entry_points_are_in_worker_tasks():
    assert [import_attribute(path) for path in (RUN_JOB, ON_FAILURE, RUN_PART)] == [
        tasks.run_job, tasks.on_failure, tasks.run_part]


def test_a_part_queued_under_the_former_path_still_runs(redis_url, tmp_path, monkeypatch):
    """Both paths reach the part's code: with its plan job gone, the part ends without computing."""
    monkeypatch.setenv("ORTHANC_RT_REDIS_URL", redis_url)
    monkeypatch.setenv("ORTHANC_RT_WORK_DIR", str(tmp_path))
    redis = redis_for(redis_url)
    queue = Queue(kinds.BEAMLETS_QUEUE, connection=redis)
    part = read_ion_plan(plan_of([beam()]))  # pickled with the job, as a plan job's parts are
    queued = [queue.enqueue(path, "gone-fanout", 0, part, job_id=f"beamlets-gone-{n}")
              for n, path in enumerate((FORMER_RUN_PART, RUN_PART))]
    assert SimpleWorker([queue], connection=redis).work(burst=True)
    assert [job.get_status(refresh=True) for job in queued] == ["finished", "finished"]
    assert [job.return_value() for job in queued] == [
        {"skipped": "the plan job is gone (cancelled, failed or finished)"}] * 2
