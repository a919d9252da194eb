"""Benchmark: dose overlay images of the demo case, through Orthanc-RT's REST route.

Stores the demo case, waits for its RTDOSE, then times GET
/rt/doses/{id}/overlay.png: the first request (loads CT, dose and structures)
and repeated ones per plane (served from the cached scene). Prints medians and
the ratio to the one-second budget (target: well under 1).

    .venv/bin/python -m bench.overlay [--repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

import requests

from bench._common import config, running, timed
from orthanc_rt.client.api import RtClient
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.ops.phantom import water_phantom_case

BUDGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    case = water_phantom_case("bench-overlay")
    cfg = config("overlay", stable_age_s=2, auto_dose={"Primaries": 200_000})
    with running(cfg):
        base = cfg.orthanc_url
        for ds in [*case.ct, case.rtstruct, case.plan]:
            requests.post(f"{base}/instances", data=to_bytes(ds), timeout=60).raise_for_status()
        dose_id = _wait_for_dose(base)
        url = f"{base}/rt/doses/{dose_id}/overlay.png"
        cold = timed(lambda: requests.get(url, timeout=60).raise_for_status())
        print(f"Overlay of the demo dose ({len(case.ct)} CT slices), {args.repeats} requests per plane")
        print(f"  first request (loads CT, dose, structures): {cold:.3f} s  ratio to budget {cold / BUDGET_S:.2f}")
        for plane in ("axial", "coronal", "sagittal"):
            times = [timed(lambda: requests.get(url, params={"plane": plane}, timeout=60).raise_for_status())
                     for _ in range(args.repeats)]
            median = statistics.median(times)
            print(f"  {plane:8s} median {median * 1000:.1f} ms (max {max(times) * 1000:.1f})  "
                  f"ratio to budget {median / BUDGET_S:.3f}")


def _wait_for_dose(base: str) -> str:
    client = RtClient(base)
    while True:
        jobs = client.jobs(kind="dose")["items"]
        if jobs:
            job = client.wait_job(jobs[0]["id"], poll_s=0.2, max_poll_s=0.2)  # RtJobError if it failed
            return job["outputs"]["rtdose"]["orthanc_id"]
        time.sleep(0.2)

if __name__ == "__main__":
    main()
