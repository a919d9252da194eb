"""A recompute a physicist can set beside the TPS's: dose only in the patient, on the dose region's grid.

Real stack and real MCsquare on the patient-like pelvis phantom (a body in
air, two lateral fields). Monte Carlo scores absurd doses in air; the stored
RTDOSE must hold none of it, report its maximum inside the body and still
read back on the CT's frame. A plan whose RTSTRUCT never arrives still gets
its dose from the CT on its frame of reference.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from orthanc_rt.analysis.body import CT_BODY_SOURCE
from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.serialize import from_bytes
from orthanc_rt.ops.phantom import patient_like_case
from tests.support.senders import rest_upload

pytestmark = pytest.mark.integration

PRIMARIES = 200_000  # a few seconds on two cores for this phantom; noise ~6 % (MCsquare's own estimate)


def _rtdose(orthanc, job):
    ds = from_bytes(orthanc.get(f"/instances/{job['outputs']['rtdose']['orthanc_id']}/file").content)
    return ds, read_rtdose(ds)


def _ct_window(case, grid):
    """The CT voxels under each stored dose voxel (same spacing: the dose is on the CT grid, cropped)."""
    ct = case.ct_volume
    assert grid.spacing_mm == pytest.approx(ct.spacing_mm)
    start = [int(round((g - c) / s)) for g, c, s in zip(grid.origin_mm, ct.origin_mm, ct.spacing_mm)]
    nz, ny, nx = grid.dose_gy.shape
    x0, y0, z0 = start
    assert min(start) >= 0 and z0 + nz <= ct.shape_zyx[0] and y0 + ny <= ct.shape_zyx[1] and x0 + nx <= ct.shape_zyx[2]
    return slice(z0, z0 + nz), slice(y0, y0 + ny), slice(x0, x0 + nx)


def test_recomputed_dose_is_restricted_to_the_body_and_cropped(orthanc, rt_stack):
    case = patient_like_case("trust-pelvis")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    plan_id = rest_upload(orthanc.base, [case.plan])[0]
    r = orthanc.post(f"/rt/instances/{plan_id}/dose", json={"primaries": PRIMARIES})
    assert r.status_code == 200, r.text
    job = orthanc.wait_final(r.json()["job"]["id"])
    assert job["state"] == "succeeded", job["message"]
    out = job["outputs"]
    assert out["restricted_to"] == f"ROI 'External' of RTSTRUCT {case.rtstruct.SOPInstanceUID}"
    assert out["ct_found_by"] == f"the plan's RTSTRUCT {case.rtstruct.SOPInstanceUID}"

    ds, grid = _rtdose(orthanc, job)
    assert ds.FrameOfReferenceUID == case.ct[0].FrameOfReferenceUID
    assert ds.DoseComment == "restricted to ROI External; grid cropped to dose region"
    assert ds.SeriesDescription == f"MCsquare dose {PRIMARIES:.0e} primaries (Orthanc-RT)"
    # Air: exactly zero. The body mask here is the phantom's own geometry, not the job's ROI mask.
    window = _ct_window(case, grid)
    body = case.external_mask[window]
    assert (~body).any() and np.all(grid.dose_gy[~body] == 0.0)
    # Dmax inside the body is what the RTDOSE holds (to its 32-bit quantisation), and what the job reports.
    assert float(grid.dose_gy.max()) == pytest.approx(out["dose_max_gy"], rel=1e-4)
    assert float(grid.dose_gy[body].max()) == pytest.approx(out["dose_max_gy"], rel=1e-4)
    # The beams cross 50 mm of air before the body: MC scores something there, which was removed.
    assert out["dose_max_outside_body_gy"] > 0
    # About 2 Gy in the PTV (the phantom's MU), nowhere near the absurd values air can give.
    ptv = case.target_mask[window]
    assert 1.5 < float(grid.dose_gy[ptv].mean()) < 2.5 and out["dose_max_gy"] < 4.0
    # The stored grid covers the dose region, not the CT's field of view.
    computed, stored = out["grid_shape_zyx"]["computed"], out["grid_shape_zyx"]["stored"]
    assert computed == list(case.ct_volume.shape_zyx) and stored == list(grid.dose_gy.shape)
    assert np.prod(stored) < 0.8 * np.prod(computed) and all(s <= c for s, c in zip(stored, computed))
    # MCsquare's statistical uncertainty of this run, and what it means.
    assert 0 < out["stat_uncertainty_percent"] < 20 and "50 %" in out["stat_uncertainty_definition"]


def test_plan_whose_rtstruct_is_missing_gets_its_dose_from_the_ct_on_its_frame(orthanc, rt_stack):
    case = patient_like_case("trust-dangling")
    rest_upload(orthanc.base, case.ct)  # the RTSTRUCT the plan names never arrives
    time.sleep(rt_stack.stable_age_s + 1)
    rest_upload(orthanc.base, [case.plan])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                           kind="dose")
    assert job["state"] == "succeeded", job["message"]
    out = job["outputs"]
    expected = f"frame of reference (the RTSTRUCT {case.rtstruct.SOPInstanceUID} the plan names is not in Orthanc)"
    assert out["ct_found_by"] == expected and f"CT found by {expected}" in job["message"]
    assert out["ct"]["series_instance_uid"] == case.ct[0].SeriesInstanceUID
    # No structure set: the body comes from the CT, and air still holds no dose.
    assert out["restricted_to"] == CT_BODY_SOURCE
    ds, grid = _rtdose(orthanc, job)
    window = _ct_window(case, grid)
    assert np.all(grid.dose_gy[~case.external_mask[window]] == 0.0)
    assert float(grid.dose_gy.max()) == pytest.approx(out["dose_max_gy"], rel=1e-4)
    assert ds.SeriesDescription.endswith("WARNING")
