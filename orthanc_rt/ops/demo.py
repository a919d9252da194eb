"""The demo: a water-phantom CT and structure set go into Orthanc, Orthanc-RT plans them and stores the results.

What `./orthanc-rt demo` runs after starting the services: the phantom's CT
and RTSTRUCT are stored through Orthanc's REST API, a 2-beam IMPT plan of
2 Gy to `TargetVolume` is requested through `POST /rt/plans` (the same route
Orthanc Explorer's form uses), and the demo follows the plan's job until
the optimised RTPLAN and its RTDOSE are in the study, then prints where to
look and the target's coverage.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import requests

from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.ops.phantom import water_phantom_case
from orthanc_rt.ops.stack import StackConfig
from orthanc_rt.pacs.client import orthanc_session

PRESCRIPTION_GY = 2.0


def run(cfg: StackConfig, *, timeout_s: float, beamlet_primaries: int, final_primaries: int) -> int:
    """Store the case, request its plan, wait for it; 0 when the plan and its dose are stored."""
    http = orthanc_session(cfg.client_auth)
    base = cfg.orthanc_url
    case = water_phantom_case()
    print(f"\nStoring the demo case (water phantom: {len(case.ct)} CT slices and an RTSTRUCT with TargetVolume) ...")
    for ds in [*case.ct, case.rtstruct]:
        http.post(f"{base}/instances", data=to_bytes(ds), timeout=60).raise_for_status()
    request = {"study": case.study.study_instance_uid, "workflow": "proton-impt", "target_roi": "TargetVolume",
               "prescription_gy": PRESCRIPTION_GY, "beam_count": 2, "beamlet_primaries": beamlet_primaries,
               "final_primaries": final_primaries}
    r = http.post(f"{base}/rt/plans", json=request, timeout=60)
    if r.status_code not in (200, 201):
        print(f"The plan request was refused ({r.status_code}): {r.text}", file=sys.stderr)
        return 1
    plan = r.json()
    print(f"Planning: 2-beam IMPT, {PRESCRIPTION_GY:g} Gy to TargetVolume (plan {plan['id']}) ...")
    plan = _follow(http, f"{base}/rt/plans/{plan['id']}", timeout_s)
    if plan["status"] != "succeeded":
        print(f"Plan {plan['id']} ended {plan['status']}: {(plan.get('job') or {}).get('message')}", file=sys.stderr)
        return 1
    _report(cfg, case.study.study_instance_uid, plan)
    return 0


def _follow(http: requests.Session, url: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last_line = ""
    plan: dict[str, Any] = {}
    while time.monotonic() < deadline:
        plan = http.get(url, timeout=10).json()
        job = plan.get("job") or {}
        eta = f", ETA {job['eta_seconds']:.0f} s" if job.get("eta_seconds") else ""
        line = f"  {plan['status']}: {job.get('stage', '')} {100 * job.get('progress', 0):.0f} %{eta}"
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if plan["status"] in ("succeeded", "failed", "cancelled", "deleted"):
            return plan
        time.sleep(1.0)
    return plan


def _report(cfg: StackConfig, study_uid: str, plan: dict[str, Any]) -> None:
    base = cfg.orthanc_url
    qa, results = plan["qa"], plan["results"]
    target = qa["target"]
    print("\nDone. The optimised RTPLAN and its RTDOSE are in Orthanc:")
    print(f"  plan record:    {base}/rt/plans/{plan['id']}")
    print(f"  study:          {base}/app/explorer.html#study?uuid={plan['orthanc_study_id']}")
    print(f"  RTPLAN:         {base}/app/explorer.html#instance?uuid={results['rtplan']['orthanc_id']}")
    print(f"  RTDOSE:         {base}/app/explorer.html#instance?uuid={results['rtdose']['orthanc_id']}"
          "  (overlay, DVH and metrics)")
    if cfg.viewer_port:
        print(f"  in OHIF:        http://127.0.0.1:{cfg.viewer_port}/viewer?StudyInstanceUIDs={study_uid}")
    gantry = ", ".join(f"{b['gantry_angle_deg']:g}" for b in qa["beams"])
    print(f"  plan:           {len(qa['beams'])} beams (gantry {gantry}), {qa['layers']} layers, {qa['spots']} spots, "
          f"{qa['optimizer']['iterations']} optimiser iterations")
    print(f"  TargetVolume:   D95 {target['D95']:.3f} Gy, D2 {target['D2']:.3f} Gy, Dmean {target['Dmean']:.3f} Gy, "
          f"V95% {target['V95%']:.1f} % (prescription {qa['prescription_gy']:g} Gy)")
    print("Services keep running; stop them with ./orthanc-rt stop")
