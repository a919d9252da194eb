"""Commands behind the `./orthanc-rt` launcher: start, stop, status, demo."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import requests

from orthanc_rt import stack
from orthanc_rt.stack import StackConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./orthanc-rt")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="start Orthanc with the plugin, Redis if needed and the workers")
    sub.add_parser("stop", help="stop what this installation started")
    sub.add_parser("status", help="processes and /rt/health")
    run = sub.add_parser("run", help="run one service in the foreground (containers, systemd)")
    run.add_argument("service", choices=["orthanc", "worker"])
    demo = sub.add_parser("demo", help="start everything, store the demo case and wait for its RTDOSE")
    demo.add_argument("--timeout", type=float, default=900, help="seconds to wait for the dose (default 900)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = StackConfig.from_env()

    if args.command == "start":
        health = stack.start(cfg)
        _print_started(cfg, health)
    elif args.command == "stop":
        stopped = stack.stop(cfg)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.command == "status":
        print(json.dumps({"processes": stack.status(cfg), "health": _health(cfg)}, indent=2))
    elif args.command == "run":
        stack.exec_foreground(cfg, args.service)
    elif args.command == "demo":
        return _demo(cfg, args.timeout)
    return 0


def _print_started(cfg: StackConfig, health: dict[str, Any]) -> None:
    print(f"Orthanc-RT is running (data in {cfg.data_dir}, logs in {cfg.log_dir})")
    print(f"  Orthanc Explorer: {cfg.orthanc_url}/app/explorer.html")
    print(f"  health:           {cfg.orthanc_url}/rt/health  ({health['status']})")
    print(f"  DICOM (C-STORE):  AET ORTHANC_RT, port {cfg.dicom_port}")
    if stack.is_running(cfg, "viewer"):
        print(f"  OHIF viewer:      http://127.0.0.1:{cfg.viewer_port}/")
    print("  stop with:        ./orthanc-rt stop")


def _health(cfg: StackConfig) -> Any:
    try:
        return requests.get(f"{cfg.orthanc_url}/rt/health", timeout=5, auth=cfg.client_auth).json()
    except (requests.RequestException, ValueError) as exc:
        return {"status": "unreachable", "error": str(exc)}


def _demo(cfg: StackConfig, timeout_s: float) -> int:
    from orthanc_rt.dicom.phantom import water_phantom_case
    from orthanc_rt.dicom.serialize import to_bytes

    health = stack.start(cfg)
    _print_started(cfg, health)
    case = water_phantom_case()
    base = cfg.orthanc_url
    print(f"\nStoring the demo case (water phantom: {len(case.ct)} CT slices, RTSTRUCT, proton PBS RTPLAN) ...")
    for ds in [*case.ct, case.rtstruct, case.plan]:
        r = requests.post(f"{base}/instances", data=to_bytes(ds), timeout=60, auth=cfg.client_auth)
        r.raise_for_status()
    plan_uid = str(case.plan.SOPInstanceUID)
    print(f"Waiting for the automatic dose job of plan {plan_uid} ...")
    job = _wait_for_plan_job(base, str(case.study.study_instance_uid), timeout_s)
    if job is None:
        print("No dose job appeared; see /rt/jobs and the logs.", file=sys.stderr)
        return 1
    if job["state"] != "succeeded":
        print(f"Dose job {job['id']} ended {job['state']}: {job['message']}", file=sys.stderr)
        return 1
    out = job["outputs"]
    dose_id = out["rtdose"]["orthanc_id"]
    print("\nDone. The RTDOSE is in Orthanc:")
    print(f"  job:            {base}/rt/jobs/{job['id']}")
    print(f"  RTDOSE:         {base}/app/explorer.html#instance?uuid={dose_id}  (Orthanc ID {dose_id})")
    print(f"  study:          {base}/app/explorer.html#study?uuid={job['orthanc_study_id']}")
    if stack.is_running(cfg, "viewer"):
        print(f"  in OHIF:        http://127.0.0.1:{cfg.viewer_port}/viewer?StudyInstanceUIDs={case.study.study_instance_uid}")
    print(f"  max dose:       {out['dose_max_gy']:.3f} Gy (plan, {out['plan']['fractions']} fractions)")
    print(f"  target centre:  {out['dose_at_isocenter_gy']:.3f} Gy")
    print("Services keep running; stop them with ./orthanc-rt stop")
    return 0


def _wait_for_plan_job(base: str, study_uid: str, timeout_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    last_line = ""
    job: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        items = requests.get(f"{base}/rt/jobs", params={"study": study_uid, "kind": "dose"}, timeout=10,
                             auth=cfg.client_auth).json()
        job = items["items"][0] if items["items"] else None
        if job is not None:
            eta = f", ETA {job['eta_seconds']:.0f} s" if job.get("eta_seconds") else ""
            line = f"  {job['state']}: {job['stage']} {100 * job['progress']:.0f} %{eta}"
            if line != last_line:
                print(line, flush=True)
                last_line = line
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
        time.sleep(1.0)
    return job


if __name__ == "__main__":
    sys.exit(main())
