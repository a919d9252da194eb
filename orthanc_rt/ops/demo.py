"""The demo: a water-phantom CT and structure set go into Orthanc, Orthanc-RT plans them and stores the results.

What `./orthanc-rt demo` runs after starting the services: the phantom's CT
and RTSTRUCT are stored through Orthanc's REST API, a 2-beam IMPT plan of
2 Gy to `TargetVolume` is requested through `POST /rt/plans` (the same route
Orthanc Explorer's form uses, here through orthanc_rt.client), and the demo follows the plan's job until
the optimised RTPLAN and its RTDOSE are in the study, then prints where to
look and the target's coverage.
"""
from __future__ import annotations

import sys

from orthanc_rt.client.api import RtClient
from orthanc_rt.client.results import Plan
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.errors import RtApiError
from orthanc_rt.ops.commands import plan_summary, progress_reporter
from orthanc_rt.ops.phantom import water_phantom_case
from orthanc_rt.ops.stack import StackConfig

PRESCRIPTION_GY = 2.0


def run(cfg: StackConfig, *, timeout_s: float, beamlet_primaries: int, final_primaries: int) -> int:
    """Store the case, request its plan, wait for it; 0 when the plan and its dose are stored."""
    client = RtClient(cfg.orthanc_url, *(cfg.client_auth or ()))
    case = water_phantom_case()
    print(f"\nStoring the demo case (water phantom: {len(case.ct)} CT slices and an RTSTRUCT with TargetVolume) ...")
    for ds in [*case.ct, case.rtstruct]:
        client.http.post_bytes("/instances", to_bytes(ds), "application/dicom")
    try:
        plan = client.request_plan(case.study.study_instance_uid, target_roi="TargetVolume",
                                   workflow="proton-impt", prescription_gy=PRESCRIPTION_GY, beam_count=2,
                                   beamlet_primaries=beamlet_primaries, final_primaries=final_primaries)
    except RtApiError as exc:
        print(f"The plan request was refused: {exc}", file=sys.stderr)
        return 1
    print(f"Planning: 2-beam IMPT, {PRESCRIPTION_GY:g} Gy to TargetVolume (plan {plan['id']}) ...", flush=True)
    progress = progress_reporter("  plan", stream=sys.stdout)
    try:
        plan = client.wait_plan(plan["id"], on_progress=progress, timeout_s=timeout_s)
    except RtApiError as exc:
        print(f"Plan {plan['id']}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    _report(cfg, case.study.study_instance_uid, plan)
    return 0


def _report(cfg: StackConfig, study_uid: str, plan: Plan) -> None:
    base = cfg.orthanc_url
    print("\nDone. The optimised RTPLAN and its RTDOSE are in Orthanc:")
    print(f"  plan record:    {base}/rt/plans/{plan['id']}")
    print(f"  study:          {base}/app/explorer.html#study?uuid={plan['orthanc_study_id']}")
    if cfg.viewer_port:
        print(f"  in OHIF:        http://127.0.0.1:{cfg.viewer_port}/viewer?StudyInstanceUIDs={study_uid}")
    print("\n".join(plan_summary(plan, base)))
    print("Services keep running; stop them with ./orthanc-rt stop")
