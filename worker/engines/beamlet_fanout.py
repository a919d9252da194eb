"""A plan's beamlets computed by every worker: sub-jobs through RQ, merged back in plan order.

`DistributedBeamlets` is a `worker.engines.beamlets.BeamletRunner` (`plan_impt(...,
beamlet_runner=runner_for(settings))`). It cuts the plan's spots into parts
(`worker.engines.beamlet_parts`: contiguous ranges in plan order of about equal Monte
Carlo cost, so a part is a whole beam, a group of layers of a large beam, or
the end of one beam and the start of the next). Each part is an RQ job
(`worker.tasks.run_part`) on the "beamlets" queue, which any worker on any host may take;
the merged matrix is the parts' columns side by side, in plan order.
`compute_part` is a part's work; RQ calls it through `worker.tasks.run_part`.

What crosses hosts, and why
---------------------------
Nothing is read from the parent's disk. The CT goes to Redis once per plan
(the array the parent plans on, int16 when its values are whole HU, zlib):
a sub-job then needs no Orthanc access and no DICOM decoding, and computes on
exactly the CT the parent holds, even one that was resampled after reading.
Compressed, SimpleFantom's 200 slices of 200 x 200 are 0.2 MB (0.04 MB at
the planning test's 2 mm); a noisy 512 x 512 x 200 patient CT is tens of MB,
stored once with a time-to-live. A part's spots travel as an `IonPlan` (plain
data) in the RQ job's arguments. Results (Gy per MU, scipy CSC arrays, zlib;
18 MB for SimpleFantom's 1564 spots at 1000 primaries, 20 times that for a
robust plan) go to Redis keys with a time-to-live, deleted once read. Each
part runs MCsquare in a folder of its own below the worker's work_dir, with
the worker's `mcsquare_threads`.

Work stealing, failures, cancellation
-------------------------------------
While it waits, the parent takes its own plan's parts that no worker has
taken yet (LREM of the job id from the RQ queue is the same atomic claim as
a worker's LMOVE), from the end of the queue while workers take from the
front. A plan job that is the only worker computes its beamlets in one
part, exactly as without fan-out; when the other workers are busy, it ends
up computing every part itself, so nothing waits for a worker that never
comes. A part that raises is retried (RQ `Retry`, `PART_RETRIES` times; a
part that failed in the parent is put back in the queue with one retry
fewer); the others are not redone. A part that finally fails fails the plan
with its reason (`BeamletFanoutError`, a `DoseEngineError`). The parent
refreshes a heartbeat key: a sub-job whose parent is gone (cancelled: RQ
kills the parent's process group; or dead) stops before starting or, while
it runs, about a second after the key lapses (`HEARTBEAT_TTL_S`; MCsquare is
killed by `worker.engines.mcsquare.run`). A parent leaving on an error or its time
limit removes its queued parts and stops the running ones.

Lost workers
------------
A worker that vanishes while it holds a part (killed, its host down, its
network cut) would leave the part "started" until RQ's own clean-up, minutes
to hours later, and a job a vanished client had popped from the queue (Redis
hands a queued job to a blocked BLPOP whose client is gone but whose
connection lingers) is in neither the queue nor any worker. So a sub-job
holds a lease on its part (a key it refreshes every few seconds while it
runs, lapsing `LEASE_TTL_S` after the last renewal), and the parent treats
a part it has no result of as lost when it is neither in the queue nor
leased: for `_LAPSE_GRACE_S` after a lease it saw lapsed, for
`_UNCLAIMED_GRACE_S` when it never saw one (the moments between a worker
popping the job and its work-horse taking the lease: a fork and a few
imports, seconds on a loaded machine). Like a failed attempt, a lost part
goes back to the queue with one retry fewer (recorded as a run "lost"), or
fails the plan naming the worker when no retry is left. A lost worker thus
costs its part's Monte Carlo run and about 20 s, never the plan.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp
from opentps.core.data import SparseBeamlets
from opentps.core.data.images import CTImage
from opentps.core.data.plan import ProtonPlan
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry, get_current_job
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.worker import Worker

from orthanc_rt.dicom.models import IonPlan
from orthanc_rt.errors import BeamletFanoutError
from orthanc_rt.scheduling.queue import QUEUE_NAMES, RUN_PART, redis_for
from orthanc_rt.settings import Settings
from worker.engines.beamlet_parts import (
    Part,
    pack_context,
    pack_matrices,
    part_count,
    part_plans,
    proton_plan,
    split_plan,
    unpack_context,
    unpack_matrices,
)
from worker.engines.beamlets import (
    BeamletRunner,
    ScenarioErrors,
    beamlets_on_grid,
    local_beamlets,
)
from worker.engines.mcsquare import ProgressCallback, ScoringGrid
from worker.engines.proton_dose import BeamModel, default_beam_model

logger = logging.getLogger(__name__)

QUEUE = QUEUE_NAMES["beamlets"]
PART_RETRIES = 2
HEARTBEAT_TTL_S = 15  # a sub-job of a vanished parent stops within this
LEASE_TTL_S = 15  # a running part's lease lapses this long after its last renewal (module docstring)
_LEASE_EVERY_S = 3.0
_LAPSE_GRACE_S = 5.0  # covers a failed attempt's moment between its lease deleted and RQ's retry queued
_UNCLAIMED_GRACE_S = 30.0
_HEARTBEAT_EVERY_S = 3.0
_POLL_S = 0.5
_CANCEL_CHECK_EVERY_S = 1.0  # how often a running part looks at its parent's heartbeat

PartHook = Callable[[int, int], None]
# One part's computation, in whichever process runs it: (context blob, part index, part payload, threads=,
# work_dir=, on_progress=) -> (the result's bytes, left in Redis for the parent; a summary for RQ's result).
PartWork = Callable[..., tuple[bytes, dict[str, Any]]]
# Called with (part index, attempt) as every attempt of a part starts, in whichever process runs it; what it
# raises fails that attempt. None in production: tests set it (tests/support/beamlet_faults.py) to inject faults.
part_hook: PartHook | None = None


class PartCancelled(Exception):
    """The parent plan is gone: the part stops without a result."""


@dataclass
class FanoutReport:
    """What a fan-out did, for logs, tests and the benchmark."""

    parts: list[Part]
    attempts: dict[int, int] = field(default_factory=dict)  # part index -> attempts started
    runs: list[dict[str, Any]] = field(default_factory=list)  # one entry per attempt, in finishing order
    stolen: list[int] = field(default_factory=list)  # parts the parent computed itself
    seconds: float = 0.0
    context_bytes: int = 0  # the CT and parameters, compressed, in Redis once
    result_bytes: int = 0  # every part's compressed matrices


def runner_for(settings: Settings) -> BeamletRunner | None:
    """The beamlet runner the settings ask for; None means `plan_impt`'s default (this process only)."""
    if not settings.distributed_beamlets:
        return None
    return DistributedBeamlets(settings.redis_url, split_spots=settings.beamlet_split_spots,
                               part_timeout_s=settings.dose_job_timeout_seconds)


class DistributedBeamlets:
    """A BeamletRunner that spreads one plan's beamlets over the RQ workers (see the module docstring)."""

    def __init__(self, redis_url: str, *, split_spots: int, part_timeout_s: int = 3 * 3600,
                 retries: int = PART_RETRIES, executors: int | None = None):
        """`executors`: how many processes to cut the work for; None counts the workers on the beamlet
        queue (and this process) when the plan starts."""
        if split_spots < 1:
            raise ValueError(f"split_spots must be positive, not {split_spots}")
        self.redis: Redis = redis_for(redis_url)
        self.split_spots = int(split_spots)
        self.part_timeout_s = int(part_timeout_s)
        self.retries = int(retries)
        self.executors = executors
        self.last_report: FanoutReport | None = None

    def __call__(self, ct: CTImage, plan: ProtonPlan, model: BeamModel, grid: ScoringGrid, *, primaries: int,
                 work_dir: Path, threads: int = 0, on_progress: ProgressCallback | None = None,
                 errors: ScenarioErrors | None = None) -> tuple[SparseBeamlets, list[SparseBeamlets]]:
        started = time.monotonic()
        energies = np.array([layer.nominalEnergy for beam in plan for layer in beam for _ in range(len(layer))],
                            dtype=np.float64)
        executors = self.executors if self.executors is not None else self._executors()
        parts = split_plan(energies, part_count(len(energies), self.split_spots, executors))
        # Parts travel as IonPlans, which (like the exported plan, worker.engines.plan_convert) hold no range shifter.
        if any(beam.rangeShifter for beam in plan):
            logger.warning("the plan has range shifters: beamlets computed in this process only")
            parts = split_plan(energies, 1)
        self.last_report = FanoutReport(parts=parts)
        if len(parts) == 1:  # nothing to share: exactly the single-process computation
            result = local_beamlets(ct, plan, model, grid, primaries=primaries, work_dir=work_dir, threads=threads,
                                    on_progress=on_progress, errors=errors)
            self.last_report.stolen = [0]
            self.last_report.seconds = time.monotonic() - started
            return result
        fanout = Fanout(self.redis, uuid.uuid4().hex, parts, ttl_s=self.part_timeout_s * (self.retries + 2))
        plans = part_plans(plan, parts)
        context = pack_context(ct, grid, primaries, errors, model)
        self.last_report.context_bytes = len(context)
        try:
            fanout.publish(context)
            fanout.enqueue(plans, timeout_s=self.part_timeout_s, retries=self.retries)
            matrices = [unpack_matrices(blob) for blob in fanout.collect(
                plans, threads=threads, work_dir=Path(work_dir), on_progress=on_progress, report=self.last_report)]
        finally:
            fanout.close(self.last_report)
        self.last_report.seconds = time.monotonic() - started
        if len({len(m) for m in matrices}) != 1:
            raise BeamletFanoutError(f"the parts returned {sorted({len(m) - 1 for m in matrices})} error scenarios")
        nominal = beamlets_on_grid(sp.hstack([m[0] for m in matrices], format="csc"), grid)
        scenarios = [beamlets_on_grid(sp.hstack([m[k] for m in matrices], format="csc"), grid)
                     for k in range(1, len(matrices[0]))]
        logger.info("beamlets of %d spots in %d parts (%d by the plan job) in %.1f s", len(energies), len(parts),
                    len(self.last_report.stolen), self.last_report.seconds)
        return nominal, scenarios

    def _executors(self) -> int:
        """Processes that may compute parts now: the workers on the beamlet queue, and this one."""
        current = get_current_job()
        me = current.worker_name if current is not None else None
        workers = Worker.all(connection=self.redis, queue=Queue(QUEUE, connection=self.redis))
        return 1 + sum(1 for worker in workers if worker.name != me)


def compute_part(fanout_id: str, index: int, part: IonPlan) -> dict[str, Any]:
    """One part, in any worker (RQ job `worker.tasks.run_part`): computed in a folder of its own, the result
    left in Redis."""
    return serve_part(fanout_id, index, part, name="beamlets", parent="plan", work=_beamlet_work)


def serve_part(fanout_id: str, index: int, part: Any, *, name: str, parent: str, work: PartWork) -> dict[str, Any]:
    """A part of the fan-out `name` taken by this worker (the RQ job now running); `parent`: the kind of job
    that fanned out."""
    rq_job = get_current_job()
    settings = Settings.from_env()
    fanout = Fanout(rq_job.connection, fanout_id, ttl_s=int(rq_job.result_ttl or 24 * 3600), work=work, name=name)
    if not fanout.parent_alive():
        return {"skipped": f"the {parent} job is gone (cancelled, failed or finished)"}
    work_dir = Path(settings.work_dir) / f"{name}-{fanout_id}-{index}"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    (work_dir / "owner.pid").write_text(str(os.getpid()))  # worker.__main__ spares folders of live processes
    executor = rq_job.worker_name or socket.gethostname()
    try:
        with fanout.leased(index, executor), stop_when_parent_gone(fanout):
            return fanout.execute(index, part, threads=settings.mcsquare_threads, work_dir=work_dir,
                                  executor=executor)
    except PartCancelled:
        return {"cancelled": f"the {parent} job is gone"}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _beamlet_work(blob: bytes, index: int, part: IonPlan, *, threads: int, work_dir: Path,
                  on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
    """One beamlet part: its spots' beamlets (and those of the error scenarios) as packed matrices."""
    ct, grid, primaries, errors, bdl_name = unpack_context(blob)
    model = default_beam_model()
    if Path(model.bdl_path).name != bdl_name:
        raise BeamletFanoutError(f"this worker's beam model is {Path(model.bdl_path).name}, the plan's {bdl_name}")
    nominal, scenarios = local_beamlets(ct, proton_plan(part), model, grid, primaries=primaries, work_dir=work_dir,
                                        threads=threads, on_progress=on_progress, errors=errors)
    matrices = [beamlets.toSparseMatrix() for beamlets in (nominal, *scenarios)]
    if any(m.shape[1] != part.spot_count for m in matrices):
        raise BeamletFanoutError(f"part {index + 1}: MCsquare returned {matrices[0].shape[1]} columns for "
                                 f"{part.spot_count} spots")
    return pack_matrices(matrices), {"spots": part.spot_count, "nonzeros": int(matrices[0].nnz)}


@contextmanager
def stop_when_parent_gone(fanout: "Fanout") -> Iterator[None]:
    """Raise PartCancelled in this (the work-horse's main) thread once the parent's heartbeat has lapsed.

    A thread watches the heartbeat and signals the main thread, whose handler
    raises wherever it is, typically in `worker.engines.mcsquare.run`'s wait, which
    then kills MCsquare. (MCsquare's log is block-buffered, so a check in the
    progress callback could come many seconds late.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    finished = threading.Event()

    def cancel(signum: int, frame: Any) -> None:
        raise PartCancelled()

    def watch() -> None:
        while not finished.wait(_CANCEL_CHECK_EVERY_S):
            try:
                alive = fanout.parent_alive()
            except RedisError:
                continue  # Redis briefly away is not a cancellation
            if not alive:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                return

    previous = signal.signal(signal.SIGUSR1, cancel)
    watcher = threading.Thread(target=watch, name="beamlet-part-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)


class Fanout:
    """The Redis side of one fan-out: keys, queueing, claiming, results, heartbeat."""

    def __init__(self, redis: Redis, fanout_id: str, parts: list[Any] | None = None, *, ttl_s: int,
                 work: PartWork | None = None, name: str = "beamlets", queue: str = QUEUE, entry: str = RUN_PART):
        """`parts`: objects with `index`, `spots` (the weight of their progress) and `label(count)`; `work`
        computes one part (default: beamlets); `name`, `queue` and `entry` (the RQ function) tell the fan-outs
        of other work apart (worker.engines.scenario_fanout)."""
        self.redis = redis
        self.id = fanout_id
        self.parts = parts or []
        self.ttl_s = ttl_s
        self.work = work or _beamlet_work
        self.name = name
        self.entry = entry
        self.queue = Queue(queue, connection=redis)
        self._prefix = f"orthanc-rt:{name}:{fanout_id}"
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # keys
    def _key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    def job_id(self, index: int) -> str:
        return f"{self.name}-{self.id}-{index}"

    # parent side
    def publish(self, context: bytes) -> None:
        self.redis.set(self._key("context"), context, ex=self.ttl_s)
        self.redis.set(self._key("alive"), "1", ex=HEARTBEAT_TTL_S)
        self._heartbeat = threading.Thread(target=self._beat, name=f"{self.name}-{self.id}-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(_HEARTBEAT_EVERY_S):
            try:
                self.redis.set(self._key("alive"), "1", ex=HEARTBEAT_TTL_S)
            except Exception:  # noqa: BLE001 - Redis briefly away: the next beat tries again
                logger.warning("beamlet fan-out %s: heartbeat not written", self.id, exc_info=True)

    def enqueue(self, plans: list[Any], *, timeout_s: int, retries: int) -> None:
        for part, part_plan in zip(self.parts, plans):
            self.queue.enqueue(self.entry, self.id, part.index, part_plan, job_id=self.job_id(part.index),
                               job_timeout=timeout_s, result_ttl=self.ttl_s, failure_ttl=self.ttl_s,
                               retry=Retry(max=retries) if retries else None, description=part.label(len(self.parts)))

    def collect(self, plans: list[Any], *, threads: int, work_dir: Path,
                on_progress: ProgressCallback | None, report: FanoutReport) -> list[bytes]:
        """Every part's result (the bytes its `work` returned), in part order; computes unclaimed parts here
        while waiting."""
        results: dict[int, bytes] = {}
        pending = [part.index for part in self.parts]
        unattended_since: dict[int, float] = {}  # part -> when it was first seen neither queued nor leased
        leased_before: set[int] = set()  # parts seen leased since they were last queued
        last_reported = -1.0

        def report_progress() -> None:  # never backwards: a retried part starts again from zero
            nonlocal last_reported
            # Said on every poll, news or not, so the job's ETA keeps moving (worker.jobs.progress).
            last_reported = max(last_reported, self._progress(pending))
            if on_progress is not None:
                on_progress(last_reported, f"{len(self.parts) - len(pending)}/{len(self.parts)} {self.name} parts done")

        while pending:
            statuses = self._statuses(pending)  # before the results: a part finished here has its result stored
            for index, blob in zip(pending, self.redis.mget([self._key(f"result:{i}") for i in pending])):
                if blob is not None:
                    results[index] = blob
                    report.result_bytes += len(blob)
                    self.redis.delete(self._key(f"result:{index}"))
                elif statuses[index] in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.FINISHED,
                                         None):
                    raise BeamletFanoutError(self._failure(index, statuses[index]))
            pending[:] = [index for index in pending if index not in results]
            report_progress()
            if not pending:
                break
            for index in self._unattended(pending, statuses, unattended_since, leased_before):
                self._requeue_lost(index)
            index = self._claim(pending)
            if index is None:
                time.sleep(_POLL_S)
                continue
            report.stolen.append(index)
            self._run_claimed(index, plans[index], threads=threads, work_dir=work_dir, on_progress=report_progress)
        return [results[part.index] for part in self.parts]

    def _statuses(self, pending: list[int]) -> dict[int, str | None]:
        statuses = {}
        for index in pending:
            try:
                statuses[index] = RqJob.fetch(self.job_id(index), connection=self.redis).get_status(refresh=False)
            except NoSuchJobError:
                statuses[index] = None
        return statuses

    def _unattended(self, pending: list[int], statuses: dict[int, str | None], since: dict[int, float],
                    leased_before: set[int]) -> list[int]:
        """The parts lost by now (module docstring: Lost workers); updates `since` and `leased_before`."""
        now = time.monotonic()
        waiting = [index for index in pending if statuses[index] in (JobStatus.QUEUED, JobStatus.STARTED)]
        with self.redis.pipeline(transaction=False) as pipe:
            for index in waiting:
                pipe.exists(self._key(f"lease:{index}"))
                pipe.lpos(self.queue.key, self.job_id(index))
            answers = pipe.execute()
        lost = []
        for index, leased, position in zip(waiting, answers[0::2], answers[1::2]):
            if leased:
                leased_before.add(index)
            if position is not None:
                leased_before.discard(index)
            if leased or position is not None:
                since.pop(index, None)
                continue
            grace = _LAPSE_GRACE_S if index in leased_before else _UNCLAIMED_GRACE_S
            if now - since.setdefault(index, now) > grace:
                since.pop(index)
                leased_before.discard(index)
                lost.append(index)
        for index in set(since) - set(waiting):
            since.pop(index)
        return lost

    def _requeue_lost(self, index: int) -> None:
        """Put a lost part back in the queue with one retry fewer, or fail the plan when none is left."""
        rq_job = RqJob.fetch(self.job_id(index), connection=self.redis)
        label = self.parts[index].label(len(self.parts))
        holder = rq_job.worker_name or "a worker that never started it"
        attempts = int(self.redis.hget(self._key("attempts"), str(index)) or 0)
        self.redis.rpush(self._key("runs"), json.dumps({
            "part": index, "attempt": attempts, "executor": holder, "pid": None, "started": None,
            "finished": time.time(), "outcome": "lost"}))
        self.redis.expire(self._key("runs"), self.ttl_s)
        if not rq_job.retries_left:
            raise BeamletFanoutError(f"{label} was lost with {holder} (its lease lapsed, or it never took one) "
                                     f"after {attempts} attempt(s)")
        logger.warning("%s lost with %s (its lease lapsed, or it never took one); back in the queue", label, holder)
        rq_job.retries_left -= 1
        # Else RQ's own clean-up would later find the dead execution and mark the requeued job failed.
        StartedJobRegistry(queue=self.queue).remove_executions(rq_job)
        self.queue.enqueue_job(rq_job)

    def _failure(self, index: int, status: str | None) -> str:
        label = self.parts[index].label(len(self.parts))
        attempts = int(self.redis.hget(self._key("attempts"), str(index)) or 0)
        reason = ""
        try:
            latest = RqJob.fetch(self.job_id(index), connection=self.redis).latest_result()
            if latest is not None and latest.exc_string:
                reason = latest.exc_string.strip().splitlines()[-1]
        except NoSuchJobError:
            pass
        if status == JobStatus.FINISHED:
            return f"{label} finished without a result (did it find the plan gone?)"
        if status is None:
            return f"{label}: its sub-job vanished from Redis"
        return f"{label} failed after {attempts} attempt(s): {reason or status}"

    def _claim(self, pending: list[int]) -> int | None:
        """Take one of our parts still waiting in the queue, from the end (workers take from the front)."""
        for index in reversed(pending):
            if self.redis.lrem(self.queue.key, -1, self.job_id(index)) == 1:
                return index
        return None

    def _run_claimed(self, index: int, part: Any, *, threads: int, work_dir: Path,
                     on_progress: Callable[[], None]) -> None:
        folder = work_dir / f"part-{index + 1}"
        rq_job = RqJob.fetch(self.job_id(index), connection=self.redis)
        try:
            self.execute(index, part, threads=threads, work_dir=folder, executor="plan job",
                         on_progress=lambda _: on_progress())
            rq_job.delete()  # done here: the RQ job only held the claim
        except PartCancelled:
            raise BeamletFanoutError(f"the {self.name} fan-out lost its Redis keys while it ran") from None
        except JobTimeoutException:
            raise  # the plan job's own time limit: it ends here (close() stops the other parts)
        except Exception as exc:
            if not rq_job.retries_left:
                attempts = int(self.redis.hget(self._key("attempts"), str(index)) or 0)
                raise BeamletFanoutError(f"{self.parts[index].label(len(self.parts))} failed after {attempts} "
                                         f"attempt(s): {type(exc).__name__}: {exc}") from exc
            # As RQ's Retry would: one retry fewer, back in the queue for whoever is free first.
            logger.warning("%s failed here (%s); back in the queue", self.parts[index].label(len(self.parts)), exc)
            rq_job.retries_left -= 1
            self.queue.enqueue_job(rq_job)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _progress(self, pending: list[int]) -> float:
        total = sum(part.spots for part in self.parts)
        fractions = self.redis.hgetall(self._key("progress"))
        done = 0.0
        for part in self.parts:
            fraction = 1.0 if part.index not in pending else float(fractions.get(str(part.index).encode(), 0.0))
            done += part.spots * min(max(fraction, 0.0), 1.0)
        return done / total if total else 1.0

    def close(self, report: FanoutReport) -> None:
        """Stop the heartbeat, stop parts still queued or running, keep the record, remove the keys."""
        self._stop_heartbeat.set()
        self.redis.delete(self._key("alive"))
        for part in self.parts:
            job_id = self.job_id(part.index)
            self.redis.lrem(self.queue.key, 0, job_id)
            try:
                rq_job = RqJob.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                continue
            if rq_job.get_status(refresh=False) == JobStatus.STARTED:
                try:
                    send_stop_job_command(self.redis, job_id)  # the worker kills the horse, and so MCsquare
                except InvalidJobOperation:
                    pass
            elif rq_job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED):
                rq_job.cancel()
        report.attempts = {int(k): int(v) for k, v in self.redis.hgetall(self._key("attempts")).items()}
        report.runs = [json.loads(entry) for entry in self.redis.lrange(self._key("runs"), 0, -1)]
        self.redis.delete(*(self._key(name) for name in ("context", "attempts", "runs", "progress")),
                          *(self._key(f"{kind}:{part.index}") for part in self.parts for kind in ("result", "lease")))

    # sub-job side (also the parent, for the parts it claims)
    def parent_alive(self) -> bool:
        return bool(self.redis.exists(self._key("alive")))

    @contextmanager
    def leased(self, index: int, executor: str) -> Iterator[None]:
        """Hold part `index`'s lease (module docstring: Lost workers) while the block runs."""
        key = self._key(f"lease:{index}")
        finished = threading.Event()

        def renew() -> None:
            while True:
                try:
                    self.redis.set(key, executor, ex=LEASE_TTL_S)
                except RedisError:
                    pass  # Redis briefly away: the next renewal tries again, well within the lease
                if finished.wait(_LEASE_EVERY_S):
                    return

        self.redis.set(key, executor, ex=LEASE_TTL_S)
        renewer = threading.Thread(target=renew, name=f"{self.name}-{self.id}-{index}-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            finished.set()
            renewer.join()
            try:
                self.redis.delete(key)
            except RedisError:
                pass  # it lapses by itself

    def execute(self, index: int, part: Any, *, threads: int, work_dir: Path, executor: str,
                on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        attempt = int(self.redis.hincrby(self._key("attempts"), str(index), 1))
        self.redis.expire(self._key("attempts"), self.ttl_s)
        started = time.time()
        outcome = "failed"
        try:
            if part_hook is not None:
                part_hook(index, attempt)
            self.redis.hset(self._key("progress"), str(index), "0")
            blob = self.redis.get(self._key("context"))
            if blob is None:
                raise PartCancelled()

            def progress(done: float, _: str) -> None:
                self.redis.hset(self._key("progress"), str(index), f"{done:.4f}")
                self.redis.expire(self._key("progress"), self.ttl_s)
                if on_progress is not None:
                    on_progress(done)

            result, summary = self.work(blob, index, part, threads=threads, work_dir=work_dir, on_progress=progress)
            self.redis.set(self._key(f"result:{index}"), result, ex=self.ttl_s)
            outcome = "done"
            return {"part": index + 1, "attempt": attempt, **summary}
        except PartCancelled:
            outcome = "cancelled"
            raise
        finally:
            self.redis.rpush(self._key("runs"), json.dumps({
                "part": index, "attempt": attempt, "executor": executor, "pid": os.getpid(),
                "started": started, "finished": time.time(), "outcome": outcome}))
            self.redis.expire(self._key("runs"), self.ttl_s)


