"""Benchmark 4: REST latency of /rt/jobs and /rt/measurements with 10 000 rows each, under load.

Seeds a fresh PostgreSQL database through the ORM (jobs and measurements
spread over ~500 studies, every kind, state and source), starts Orthanc with
the plugin on it (no worker: nothing here computes), then runs a bounded loop
on loopback: a few client threads share a fixed list of requests mixing the
queries a viewer or script makes. Prints p50/p95/p99 per query and overall,
and the ratio of the overall p95 to the 50 ms target (≤ 1 meets it).

    PYTHONPATH=. .venv/bin/python -m bench.rest_latency [--rows 10000] [--threads 4] [--requests 3000]
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator
from urllib.parse import urlencode, urlsplit

import psycopg

from bench._common import config, running
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.records import db, jobs
from orthanc_rt.records.db import session_scope
from orthanc_rt.records.tables import Job, JobEvent, Measurement, utcnow
from tests.support.services import postgres_database

TARGET_P95_S = 0.050
STUDIES = 500
# Share of each job kind and state in a working department: most jobs are done, a few are in flight.
KIND_WEIGHTS = {"dose": 4, "analysis": 5, "sr": 1}
STATE_WEIGHTS = {jobs.SUCCEEDED: 85, jobs.FAILED: 6, jobs.CANCELLED: 2, jobs.QUEUED: 3, jobs.RUNNING: 2,
                 jobs.WAITING: 2}
ROIS = ("PTV", "CTV", "Body", "SpinalCord", "Lung_L", "Lung_R", "Heart", "Esophagus")
DVH_METRICS = (("Dmean", "Gy"), ("D95", "Gy"), ("D2", "Gy"), ("V20Gy", "%"), ("volume", "cc"))


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A throw-away PostgreSQL database (the tests' helper), dropped afterwards."""
    databases = postgres_database()
    url = next(databases)
    try:
        yield url
    finally:
        databases.close()


def seed(url: str, rows: int, rng: random.Random) -> list[str]:
    """`rows` jobs and `rows` measurements; returns the StudyInstanceUIDs used."""
    studies = [derive_uid("bench-study", str(i)) for i in range(STUDIES)]
    now = utcnow()
    kinds, kind_w = zip(*KIND_WEIGHTS.items())
    states, state_w = zip(*STATE_WEIGHTS.items())
    job_rows, event_rows = [], []
    for i in range(rows):
        kind, state = rng.choices(kinds, kind_w)[0], rng.choices(states, state_w)[0]
        study = rng.choice(studies)
        created = now - timedelta(minutes=rows - i + rng.random())
        done = state in jobs.FINAL_STATES
        jid = jobs.job_id(kind, study, str(i))
        job_rows.append(Job(
            id=jid, kind=kind, state=state, stage="done" if done else "computing", progress=1.0 if done else 0.4,
            message="" if state != jobs.FAILED else "MCsquare exited with status 1", source=rng.choice(["auto", "api"]),
            requested_by=rng.choice(["", "phil", "dora"]), study_instance_uid=study,
            orthanc_study_id=f"{i:08x}-0000-0000-0000-{rng.getrandbits(48):012x}",
            params={"primaries": 1_000_000, "scoring_spacing_mm": None} if kind == "dose" else {"bin_width_gy": 0.01},
            inputs={"plan": {"sop_instance_uid": derive_uid(jid, "in"), "orthanc_id": f"{i:040x}"}},
            outputs={"rtdose": {"sop_instance_uid": derive_uid(jid, "out"), "orthanc_id": f"{i:040x}"}}
            if state == jobs.SUCCEEDED else {},
            attempts=1, created_at=created, updated_at=created, enqueued_at=created,
            started_at=None if state in (jobs.QUEUED, jobs.WAITING) else created,
            finished_at=created + timedelta(seconds=30) if done else None,
            wait_deadline=now + timedelta(days=7) if state == jobs.WAITING else None))
        event_rows.append(JobEvent(job_id=jid, at=created, state=state, stage="", message="seeded", actor="bench"))
    measurement_rows = []
    for i in range(rows):
        study = rng.choice(studies)
        roi = rng.randrange(len(ROIS))
        source = rng.choices(["dvh", "image", "manual", "sr"], [70, 15, 10, 5])[0]
        metric, unit = rng.choice(DVH_METRICS) if source == "dvh" else \
            (("HUmean", "HU") if source == "image" else ("length", "mm"))
        created = now - timedelta(minutes=rows - i + rng.random())
        measurement_rows.append(Measurement(
            source=source, type={"Gy": "dose", "%": "volume", "cc": "volume", "HU": "hounsfield"}.get(unit, "distance"),
            metric=metric, value=round(rng.uniform(0, 70), 3), unit=unit, method="bench", label="",
            study_instance_uid=study, series_instance_uid=derive_uid(study, "series", str(i % 3)),
            sop_instance_uid=derive_uid(study, "sop", str(i)), dose_sop_instance_uid=derive_uid(study, "dose"),
            structure_set_sop_instance_uid=derive_uid(study, "rs"), roi_number=roi + 1, roi_name=ROIS[roi],
            job_id=jobs.job_id("analysis", study) if source in ("dvh", "image") else None,
            created_by="phil" if source == "manual" else "", created_at=created, updated_at=created,
            details={"bin_width_gy": 0.01} if source == "dvh" else {}))
    with session_scope(url) as s:
        s.add_all(job_rows)
        s.flush()
        s.add_all(event_rows)
        s.add_all(measurement_rows)
    # Statistics and visibility map as autovacuum leaves them on a table in steady use.
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
    return studies


def query_mix(studies: list[str], rows: int, rng: random.Random) -> list[tuple[str, str, dict[str, str]]]:
    """(name, path, params) of one round of typical requests; studies and offsets vary per round."""
    study = rng.choice(studies)
    deep = str(rng.randrange(rows // 2, rows - 100))
    return [
        ("jobs first page", "/rt/jobs", {}),
        ("jobs by study", "/rt/jobs", {"study": study}),
        ("jobs by state+kind", "/rt/jobs", {"state": rng.choice(["succeeded", "failed", "running"]),
                                            "kind": rng.choice(list(KIND_WEIGHTS))}),
        ("jobs offset page", "/rt/jobs", {"offset": deep, "limit": "50"}),
        ("meas first page", "/rt/measurements", {}),
        ("meas by study", "/rt/measurements", {"study": study}),
        ("meas sorted", "/rt/measurements", {"sort": rng.choice(["-value", "-created_at", "roi_name"]),
                                             "metric": rng.choice(["D95", "Dmean", "V20Gy"])}),
        ("meas offset page", "/rt/measurements", {"offset": deep, "sort": "-created_at"}),
        ("meas csv", "/rt/measurements", {"format": "csv", "limit": "50", "source": "dvh"}),
    ]


def load(base: str, plan: list[tuple[str, str, dict[str, str]]], threads: int) -> dict[str, list[float]]:
    """Run `plan` with `threads` clients sharing it; latencies in seconds per query name."""
    times: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    cursor = iter(plan)
    errors: list[str] = []

    host = urlsplit(base)

    def client() -> None:
        # http.client on one kept-alive connection: the client's own overhead stays well under a millisecond
        # (requests added about one per call, on the same two cores as the server).
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                connection.close()
                return
            name, path, params = item
            started = time.perf_counter()
            connection.request("GET", f"{path}?{urlencode(params)}" if params else path)
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                errors.append(f"{name}: {response.status} {body[:200]!r}")
            with lock:
                times[name].append(elapsed)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return times


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[94], cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="jobs and measurements each")
    parser.add_argument("--threads", type=int, default=4, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests in all")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with throwaway_database() as url:
        db.upgrade(url)
        started = time.perf_counter()
        studies = seed(url, args.rows, rng)
        print(f"seeded {args.rows} jobs and {args.rows} measurements over {STUDIES} studies "
              f"in {time.perf_counter() - started:.1f} s")
        db.engine_for.cache_clear()
        cfg = config("rest-latency", database_url=url)
        with running(cfg, worker=False):
            rounds = []
            while len(rounds) < args.requests:
                rounds.extend(query_mix(studies, args.rows, rng))
            warm = [item for item in query_mix(studies, args.rows, rng) for _ in range(3)]
            load(cfg.orthanc_url, warm, args.threads)  # first connections, imports, plan caches
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            times = load(cfg.orthanc_url, rounds[:args.requests], args.threads)
            wall = time.perf_counter() - started
    report(times, wall, args)
    # Server, database and clients share this machine's cores: say how busy it was.
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}, "
          f"on {os.cpu_count()} cores")


def report(times: dict[str, list[float]], wall: float, args: argparse.Namespace) -> None:
    every = [t for values in times.values() for t in values]
    print(f"{len(every)} requests, {args.threads} client threads, {len(every) / wall:.0f} requests/s on loopback")
    print(f"{'query':22s} {'n':>5s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}")
    for name, values in times.items():
        p50, p95, p99 = percentiles(values)
        print(f"{name:22s} {len(values):5d} {p50 * 1000:8.1f} {p95 * 1000:8.1f} {p99 * 1000:8.1f}")
    p50, p95, p99 = percentiles(every)
    print(f"{'overall':22s} {len(every):5d} {p50 * 1000:8.1f} {p95 * 1000:8.1f} {p99 * 1000:8.1f}")
    print(f"ratio p95 / {TARGET_P95_S * 1000:.0f} ms target: {p95 / TARGET_P95_S:.2f} "
          f"({'meets' if p95 <= TARGET_P95_S else 'misses'} the target)")


if __name__ == "__main__":
    main()
