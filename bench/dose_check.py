"""Benchmark 7: a TPS export stored → its dose check's verdict, against the bare recompute.

The case is the pelvis phantom (body in air, bone, two lateral fields of
about 1,500 spots). Each round first computes the plan's dose directly
(read plan and CT, `compute_dose` at --primaries, as the recompute does):
that is the bare recompute, and its dose, labelled as another system's,
is the round's 'TPS dose'. Then the plan (a variant with its own UID) and
that dose are stored through REST, and the time until the check job has
succeeded is the store-to-verdict time (recompute through the dose job,
then gamma at three criteria, the per-ROI table, the PDF and three DICOM
objects stored). Prints the medians, the ratio (target: 1.2 at most) and
where the check's own time went.

    .venv/bin/python -m bench.dose_check [--primaries 1000000] [--rounds 2]
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
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.errors import RtJobError
from orthanc_rt.ops.phantom import patient_like_case
from tests.support import cases as util
from tests.support.tps_exports import tps_dose_grid, tps_rtdose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--primaries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    case = patient_like_case("bench-dose-check")
    spots = read_ion_plan(case.plan).spot_count
    pipeline: list[float] = []
    direct: list[float] = []
    check_seconds: list[float] = []
    cfg = config("dose-check", stable_age_s=2, auto_dose={"Primaries": args.primaries})
    with running(cfg):
        base = cfg.orthanc_url
        for ds in [*case.ct, case.rtstruct]:
            requests.post(f"{base}/instances", data=to_bytes(ds), timeout=60).raise_for_status()
        time.sleep(cfg.stable_age_s + 2)
        for round_ in range(args.rounds):
            plan = util.instance_variant(case.plan, f"round-{round_}")
            work = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-direct-"))
            holder: dict = {}
            direct.append(timed(lambda: holder.update(grid=tps_dose_grid(case, work, primaries=args.primaries,
                                                                          spacing_mm=None))))
            dose = tps_rtdose(case, holder["grid"], plan, name=f"round-{round_}")
            seconds, job = _through_orthanc(base, plan, dose)
            pipeline.append(seconds)
            check_seconds.append(job["outputs"]["seconds"])
            print(f"round {round_}: direct {direct[-1]:.1f} s, store-to-verdict {seconds:.1f} s "
                  f"(check job itself {job['outputs']['seconds']:.1f} s), verdict {job['outputs']['verdict']} "
                  f"{job['outputs']['pass_rate_percent']:.1f} %")
    ratio = statistics.median(pipeline) / statistics.median(direct)
    print(f"case: {case.ct_volume.shape_zyx} CT voxels, {spots} spots, {args.primaries:.0e} primaries")
    print(f"bare recompute (compute_dose): {summary(direct)}")
    print(f"store -> verdict: {summary(pipeline)}")
    print(f"check job (gamma x3, ROIs, PDF, store): {summary(check_seconds)}")
    print(f"ratio store-to-verdict / bare recompute: {ratio:.2f} (target <= 1.20)")


def _through_orthanc(base: str, plan, dose) -> tuple[float, dict]:
    client = RtClient(base)
    started = time.perf_counter()
    for ds in (plan, dose):
        requests.post(f"{base}/instances", data=to_bytes(ds), timeout=60).raise_for_status()
    plan_uid = str(plan.SOPInstanceUID)
    while True:
        jobs = client.jobs(kind="check", limit=50)["items"]
        mine = [j for j in jobs if j["inputs"].get("plan", {}).get("sop_instance_uid") == plan_uid]
        if mine:
            try:
                job = client.wait_job(mine[0]["id"], poll_s=0.5, max_poll_s=0.5)
            except RtJobError as exc:
                raise SystemExit(f"check failed: {exc.message}") from None
            return time.perf_counter() - started, job
        time.sleep(0.5)

if __name__ == "__main__":
    main()
