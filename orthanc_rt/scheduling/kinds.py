"""The job kinds and the RQ queues: one entry per kind, everything else about kinds derives from here.

A job kind (a row in the jobs table, a `kind` in the REST API) is a
`JobKind`: its queue, its time limit (seconds, or the name of the `Settings`
field that gives them), whether workers import its runner at start-up, and
its runner, a module path whose `run(job_id, settings, store)` computes it
(`worker.tasks.run_job` imports it by that path). The paths are strings so
that this module, which the plugin imports, never imports the worker's
OpenTPS code. `NAMES` (the kinds the REST API accepts), `scheduling.queue.QUEUE_NAMES` and the
time limits, and the worker's preloading all read this module.

Adding a kind: a module under worker/jobs/ with `run`, and one `JobKind` in
`KINDS` below (on an existing queue; a new queue also takes its place in
`QUEUE_PRIORITY`, which is checked at import).

Sub-job queues and the priority order
-------------------------------------
Beamlet parts (worker.engines.beamlet_fanout) are RQ jobs but not database
jobs: a plan job enqueues them itself, so they have no runner or time limit
here, only their queue (`SubJobs`). Where a worker looks first is a property
of the set of queues, not of any one kind, so it is one explicit list,
`QUEUE_PRIORITY`, of queue names rather than a number on each entry: the
order can be read (and reviewed) at a glance, kinds sharing a queue (analysis
and sr) need no agreement between their entries, and a queue missing from it
fails the import instead of silently sorting last.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

ANALYSIS_QUEUE = "orthanc-rt-analysis"
BEAMLETS_QUEUE = "orthanc-rt-beamlets"
DOSE_QUEUE = "orthanc-rt-dose"
PLAN_QUEUE = "orthanc-rt-plan"
SCENARIOS_QUEUE = "orthanc-rt-scenarios"

# Workers take from these queues in this order. Analyses and SR imports take seconds: their own queue, never
# behind Monte Carlo jobs. Beamlet sub-jobs come before new dose and plan work: they finish a plan already under
# way. Plans (beamlets + optimisation, up to hours) have their own queue so they never hold up doses.
# Scenario sub-jobs (robustness evaluations), likewise, finish an evaluation under way.
QUEUE_PRIORITY = (ANALYSIS_QUEUE, BEAMLETS_QUEUE, SCENARIOS_QUEUE, DOSE_QUEUE, PLAN_QUEUE)


@dataclass(frozen=True)
class JobKind:
    """One kind of database job."""

    name: str
    queue: str
    runner: str  # module path; its run(job_id, settings, store) computes the job
    time_limit: int | str  # seconds, or the name of the Settings field that gives them
    # Import the runner in the worker before it forks work-horses (OpenTPS takes about a second to import).
    preload: bool = False


@dataclass(frozen=True)
class SubJobs:
    """RQ jobs that one job enqueues for others to help with; worker.tasks holds their entry point."""

    name: str  # as `python -m worker --queues` and the queue statistics name it
    queue: str
    module: str  # the module with their logic (for preloading)
    preload: bool = False


# In the order the kinds came (the REST API lists them so); the queues' order is QUEUE_PRIORITY.
KINDS = (
    JobKind("dose", DOSE_QUEUE, "worker.jobs.dose", "dose_job_timeout_seconds", preload=True),
    JobKind("analysis", ANALYSIS_QUEUE, "worker.jobs.analysis", 900, preload=True),  # takes seconds
    JobKind("sr", ANALYSIS_QUEUE, "worker.jobs.sr", 300),
    JobKind("plan", PLAN_QUEUE, "worker.jobs.plan", "plan_job_timeout_seconds"),
    # Compares doses (gamma, DVHs, report): minutes at most. Its recompute is a dose job, on the dose queue.
    JobKind("check", ANALYSIS_QUEUE, "worker.jobs.check", 1800),
    # Error-scenario doses of a plan (one Monte Carlo run each, fanned out as scenario sub-jobs), then goals.
    JobKind("robustness", DOSE_QUEUE, "worker.jobs.robustness", "plan_job_timeout_seconds"),
)
SUB_JOBS = (SubJobs("beamlets", BEAMLETS_QUEUE, "worker.engines.beamlet_fanout", preload=True),
            SubJobs("scenarios", SCENARIOS_QUEUE, "worker.engines.scenario_fanout", preload=True))

BY_NAME: dict[str, JobKind] = {kind.name: kind for kind in KINDS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def queue_names() -> dict[str, str]:
    """Kind (or sub-job) name -> RQ queue, in priority order (kinds of one queue in KINDS' order)."""
    entries: list[JobKind | SubJobs] = [*KINDS, *SUB_JOBS]
    ordered = sorted(entries, key=lambda entry: QUEUE_PRIORITY.index(entry.queue))  # stable
    return {entry.name: entry.queue for entry in ordered}


def time_limits(settings: Mapping[str, int]) -> dict[str, int]:
    """Every kind's time limit in seconds; `settings` gives the values of the limits that are settings."""
    return {kind.name: kind.time_limit if isinstance(kind.time_limit, int) else int(settings[kind.time_limit])
            for kind in KINDS}


def preload_modules() -> list[str]:
    """The modules a worker imports before it forks work-horses."""
    return [kind.runner for kind in KINDS if kind.preload] + [sub.module for sub in SUB_JOBS if sub.preload]


def _check() -> None:
    """Mistakes in the tables above fail every import, in the plugin and the workers alike."""
    names = [entry.name for entry in (*KINDS, *SUB_JOBS)]
    if len(set(names)) != len(names):
        raise ValueError(f"job kinds and sub-jobs must have distinct names: {names}")
    unplaced = {entry.queue for entry in (*KINDS, *SUB_JOBS)} - set(QUEUE_PRIORITY)
    if unplaced:
        raise ValueError(f"queues {sorted(unplaced)} have no place in QUEUE_PRIORITY")


_check()
