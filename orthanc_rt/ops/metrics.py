"""Prometheus metrics of an installation, read afresh from the database and Redis at every scrape.

`GET /rt/metrics` (plugin/routes/metrics.py) answers `scrape(registry)`. The numbers are the database's and
Redis's, never counters kept in a process: Orthanc's Python plugin may be restarted and the workers are other
processes, often on other hosts, so only the shared records know how many jobs ran, failed or wait. That is
why this is a custom collector (`JobMetrics.collect` builds the metric families per scrape) on a private
registry, not the library's process-global counters.

Labels stay low-cardinality and free of patient data: job kinds, job states, RQ queue names, failure classes
(orthanc_rt.records.jobs.FAILURE_CLASSES), check verdicts and worker names (host and process, as RQ names
them). Never a patient, a study, a UID or a user.

Why here (orthanc_rt/ops): these are the operations' view across domains, the job and check records and the
RQ queues and workers, and `ops` is the layer that may import both `records` and `scheduling`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from orthanc_rt.records import durations, jobs
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import utcnow
from orthanc_rt.scheduling import kinds
from orthanc_rt.scheduling.queue import Dispatcher

# The Prometheus text exposition format, version 0.0.4 (what generate_latest writes; every Prometheus reads it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "orthanc_rt_"
# Monte Carlo throughput is averaged over this many of the latest succeeded dose jobs: recent enough to show a
# slower host or a changed thread count, enough jobs to smooth out their sizes.
PRIMARIES_RATE_JOBS = 100
# Job kinds whose `primaries` parameter is the Monte Carlo run of the whole job (a check's recompute is a dose
# job; a plan's beamlets and final dose have primaries of two kinds and are left out).
MONTE_CARLO_KINDS = ("dose",)


class JobMetrics(Collector):
    """The collector: jobs and checks from the database, queues and workers from Redis.

    A source that cannot be read leaves its metrics out of that scrape and sets `orthanc_rt_up` for it to 0,
    so a Redis outage does not hide the database's numbers (and the other way round).
    """

    def __init__(self, store: JobStore, checks: CheckStore, dispatcher: Dispatcher | None,
                 now: Callable[[], datetime] = utcnow):
        self.store = store
        self.checks = checks
        self.dispatcher = dispatcher
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now()
        up = GaugeMetricFamily(PREFIX + "up", "Whether this scrape could read the service (1) or not (0)",
                               labels=["service"])
        families: list[Metric] = []
        for service, read in (("database", self._database), ("redis", self._redis)):
            try:
                families.extend(read(now))
                up.add_metric([service], 1)
            except (SQLAlchemyError, RedisError):
                up.add_metric([service], 0)
        yield up
        yield from families

    # -- the database ----------------------------------------------------------------------------------
    def _database(self, now: datetime) -> list[Metric]:
        return [self._jobs(), self._durations(), self._stage_durations(), self._failures(), self._primaries_rate(),
                self._oldest_queued(now), self._checks()]

    def _jobs(self) -> Metric:
        counts = self.store.counts_by_kind_and_state()
        family = GaugeMetricFamily(PREFIX + "jobs", "Jobs in the database by kind and state",
                                   labels=["kind", "state"])
        for kind in _kinds(k for k, _ in counts):
            for state in jobs.STATES:
                family.add_metric([kind, state], counts.get((kind, state), 0))
        return family

    def _durations(self) -> Metric:
        found = durations.histograms(self.store.url, durations.JOB)
        family = HistogramMetricFamily(
            PREFIX + "job_duration_seconds",
            "Run time of finished jobs (last start to end; waiting in a queue not included), by kind and state; "
            "a job run again after an outage counts each end", labels=["kind", "state"])
        empty = durations.Histogram([0] * (len(durations.BUCKETS_S) + 1), 0.0)
        for kind in _kinds(k for k, _ in found):
            for state in jobs.FINAL_STATES:
                family.add_metric([kind, state], *_buckets(found.get((kind, state), empty)))
        return family

    def _stage_durations(self) -> Metric:
        family = HistogramMetricFamily(
            PREFIX + "stage_duration_seconds",
            "Time jobs spent in each stage they ran to its end (from entering it to the job's next stage or end), "
            "by kind and stage; stages are named by the code (fetching inputs, Monte Carlo, computing beamlets, "
            "optimizing, ...), a series appears with the first stage of its name", labels=["kind", "stage"])
        for (kind, stage), histogram in durations.histograms(self.store.url, durations.STAGE).items():
            family.add_metric([kind, stage], *_buckets(histogram))
        return family

    def _failures(self) -> Metric:
        counts = self.store.failure_counts()
        family = GaugeMetricFamily(
            PREFIX + "failed_jobs",
            "Jobs that ended without a result (failed or cancelled), by kind and reason class; a gauge, not a "
            "counter: a job failed by an outage is run again and leaves this count",
            labels=["kind", "reason"])
        for kind in _kinds(k for k, _ in counts):
            for reason in jobs.FAILURE_CLASSES:
                family.add_metric([kind, reason], counts.get((kind, reason), 0))
        return family

    def _primaries_rate(self) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "monte_carlo_primaries_per_second",
            f"Monte Carlo primaries per second of run time over the latest {PRIMARIES_RATE_JOBS} succeeded jobs "
            "of the kind (the whole job's run time: fetching, Monte Carlo and storing)", labels=["kind"])
        for kind in MONTE_CARLO_KINDS:
            runs = [(int(params["primaries"]), seconds) for params, seconds
                    in self.store.recent_runs(kind, PRIMARIES_RATE_JOBS) if params.get("primaries")]
            seconds = sum(s for _, s in runs)
            if seconds > 0:  # no succeeded job yet: no rate rather than a made-up 0
                family.add_metric([kind], sum(p for p, _ in runs) / seconds)
        return family

    def _oldest_queued(self, now: datetime) -> Metric:
        entered = self.store.oldest_queued()
        family = GaugeMetricFamily(
            PREFIX + "oldest_queued_job_age_seconds",
            "How long the longest-waiting queued job of the kind has waited since it (last) entered the queue; "
            "0 when none is queued", labels=["kind"])
        for kind in _kinds(entered):
            at = entered.get(kind)
            family.add_metric([kind], max(0.0, (now - at).total_seconds()) if at else 0.0)
        return family

    def _checks(self) -> Metric:
        family = GaugeMetricFamily(PREFIX + "checks", "Dose checks by verdict", labels=["verdict"])
        for verdict, n in self.checks.counts_by_verdict().items():
            family.add_metric([verdict], n)
        return family

    # -- Redis -----------------------------------------------------------------------------------------
    def _redis(self, now: datetime) -> list[Metric]:
        if self.dispatcher is None:
            raise RedisError("no Redis configured")
        queues = GaugeMetricFamily(PREFIX + "queue_length", "Jobs waiting in each RQ queue", labels=["queue"])
        for name, length in self.dispatcher.queue_lengths().items():
            queues.add_metric([name], length)
        workers = self.dispatcher.stats()["workers"]  # what /rt/health shows
        count = GaugeMetricFamily(PREFIX + "workers", "RQ workers registered in Redis (a dead worker's "
                                                      "registration expires within RQ's worker TTL, 420 s)")
        count.add_metric([], len(workers))
        heartbeat = GaugeMetricFamily(
            PREFIX + "worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat (idle workers beat about every 7 minutes, busy ones "
            "every job-monitoring interval)", labels=["worker"])
        for worker in workers:
            if worker.get("last_heartbeat"):
                age = (now - datetime.fromisoformat(worker["last_heartbeat"])).total_seconds()
                heartbeat.add_metric([worker["name"]], max(0.0, age))
        return [queues, count, heartbeat]


def _kinds(found: Iterable[str]) -> list[str]:
    """Every registered job kind (so each series exists before its first job), then any other kind the
    database holds (rows of a kind since removed)."""
    extra = sorted(set(found) - set(kinds.NAMES))
    return [*kinds.NAMES, *extra]


def _buckets(histogram: durations.Histogram) -> tuple[list[tuple[str, float]], float]:
    """prometheus_client's buckets (cumulative, ending with +Inf) and sum of a histogram."""
    bounds = [*map(repr, durations.BUCKETS_S), "+Inf"]
    return list(zip(bounds, histogram.cumulative)), histogram.seconds


def registry_for(store: JobStore, checks: CheckStore, dispatcher: Dispatcher | None, *,
                 now: Callable[[], datetime] = utcnow) -> CollectorRegistry:
    """A private registry holding only Orthanc-RT's collector (the library's default one also collects the
    process's own metrics, which would describe Orthanc's embedded Python, not the service). `now`: the
    clock ages are measured by."""
    registry = CollectorRegistry(auto_describe=False)  # registering reads nothing: no scrape at start-up
    registry.register(JobMetrics(store, checks, dispatcher, now))
    return registry


def scrape(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the text exposition format (CONTENT_TYPE)."""
    return generate_latest(registry)
