"""Benchmark 2: orchestration overhead, RTPLAN stored → RTDOSE stored.

Through Orthanc-RT: time from the REST upload of a plan (its CT already stored
and stable) until its dose job has succeeded (the RTDOSE is in Orthanc). Direct:
the same MCsquare computation on the same inputs from a plain Python script
(read plan and CT, compute_dose, build the RTDOSE). Rounds alternate; prints
medians and the ratio pipeline / direct (target ≤ 1.10).

    .venv/bin/python -m bench.orchestration [--primaries 1000000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from bench._common import config, running, summary, timed
from orthanc_rt.client.api import RtClient
from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.ops.phantom import water_phantom_case
from tests.support import cases as util
from worker.engines.proton_dose import compute_dose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--primaries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    case = water_phantom_case("bench-orchestration")
    pipeline: list[float] = []
    direct: list[float] = []
    cfg = config("orchestration", stable_age_s=2, auto_dose={"Primaries": args.primaries})
    with running(cfg):
        base = cfg.orthanc_url
        for ds in [*case.ct, case.rtstruct]:
            requests.post(f"{base}/instances", data=to_bytes(ds), timeout=60).raise_for_status()
        time.sleep(cfg.stable_age_s + 2)
        for round_ in range(args.rounds):
            plan = util.instance_variant(case.plan, f"round-{round_}")
            pipeline.append(timed(lambda: _through_orthanc(base, to_bytes(plan))))
            direct.append(timed(lambda: _direct(case, plan, args.primaries)))
    ratio = statistics.median(pipeline) / statistics.median(direct)
    print(f"RTPLAN stored -> RTDOSE stored, {len(case.ct)} CT slices, {args.primaries:.0e} primaries")
    print(f"  Orthanc-RT pipeline  {summary(pipeline)}")
    print(f"  direct script        {summary(direct)}")
    print(f"  ratio pipeline/direct = {ratio:.3f}  (target <= 1.10)")


def _through_orthanc(base: str, plan: bytes) -> None:
    client = RtClient(base)
    plan_id = requests.post(f"{base}/instances", data=plan, timeout=60).json()["ID"]
    while True:
        jobs = client.jobs(limit=500)["items"]
        mine = [j for j in jobs if j["inputs"].get("plan", {}).get("orthanc_id") == plan_id]
        if mine:
            # Polled every 50 ms, no back-off: the poll interval is part of what is measured.
            client.wait_job(mine[0]["id"], poll_s=0.05, max_poll_s=0.05)  # RtJobError if it failed
            return
        time.sleep(0.05)

def _direct(case, plan, primaries: int) -> None:
    ion_plan = read_ion_plan(plan)
    ct = read_ct_series(case.ct)
    with tempfile.TemporaryDirectory() as work:
        grid = compute_dose(ct, ion_plan, primaries=primaries, work_dir=Path(work))
    to_bytes(build_rtdose(grid, case.study, sop_instance_uid=derive_uid("bench", plan.SOPInstanceUID),
                          series_instance_uid=derive_uid("bench", "series"),
                          referenced_plan_uid=str(plan.SOPInstanceUID), series_description="bench"))


if __name__ == "__main__":
    main()
