"""The check job (worker/jobs/check.py) against an in-memory Orthanc with synthetic doses: how TPS doses are
read (PLAN, BEAM summed, FRACTION scaled), the RBE convention, waits, refusals, and what it stores.

The 'recompute' here is a smooth dose stored as a dose job's result (its UID derived from the job id); the
TPS doses are that dose transformed as the case needs. No Monte Carlo: tests/integration/test_dose_check.py
runs MCsquare end to end."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.models import DoseGrid
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError, InputNotReady
from orthanc_rt.records import db, jobs
from orthanc_rt.records.checks import CheckStore
from orthanc_rt.records.jobs import JobStore
from orthanc_rt.records.tables import Job
from orthanc_rt.scheduling.params import CheckParams
from tests.support import cases as util
from tests.support.fake_orthanc import FakeOrthanc
from tests.support.tps_exports import tps_rtdose
from worker.jobs import check

RECOMPUTE_JOB = "dose-unit-recompute"


def _smooth_dose(case, fraction_of_beam: float = 1.0) -> DoseGrid:
    """A dose peaked on the target: a Gaussian of 20 mm width on the CT grid (Gy)."""
    ct = case.ct_volume
    nz, ny, nx = ct.shape_zyx
    z, y, x = np.meshgrid(*(o + s * np.arange(n) for o, s, n in
                            zip(ct.origin_mm[::-1], ct.spacing_mm[::-1], (nz, ny, nx))), indexing="ij")
    cx, cy, cz = case.target_center_mm
    dose = 2.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * 20.0 ** 2))
    return DoseGrid(dose_gy=(dose * fraction_of_beam).astype(np.float32), origin_mm=ct.origin_mm,
                    spacing_mm=ct.spacing_mm, frame_of_reference_uid=ct.frame_of_reference_uid)


class World:
    def __init__(self, tmp_path, *, fractions: int = 1, beams: int = 1):
        self.case = util.small_phantom_case(f"check-job-{fractions}-{beams}",
                                            gantry_angles_deg=(0.0, 90.0)[:beams], fractions=fractions)
        self.url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
        db.upgrade(self.url)
        self.store = JobStore(self.url)
        self.orthanc = FakeOrthanc([*self.case.ct, self.case.rtstruct, self.case.plan])
        self.grid = _smooth_dose(self.case)
        recompute = build_rtdose(self.grid, self.case.study,
                                 sop_instance_uid=derive_uid("orthanc-rt", RECOMPUTE_JOB, "rtdose"),
                                 series_instance_uid=derive_uid("unit", "recompute-series"),
                                 referenced_plan_uid=str(self.case.plan.SOPInstanceUID), series_description="MC")
        stored = self.orthanc.store(recompute)
        self.store.create(Job(id=RECOMPUTE_JOB, kind="dose", state=jobs.SUCCEEDED, params={"primaries": 100_000},
                              study_instance_uid=self.case.study.study_instance_uid,
                              outputs={"rtdose": {"orthanc_id": stored["ID"]}}))

    def tps(self, ds: Dataset) -> None:
        self.orthanc.store(ds)

    def run(self, params: CheckParams = CheckParams()) -> dict:
        plan_id = self.orthanc.post_bytes("/tools/find", b'{"Level": "Instance", "Query": {"Modality": "RTPLAN"}}')
        job = Job(id="check-unit", kind="check", state=jobs.RUNNING, params=params.as_dict(), source="api",
                  requested_by="unit", study_instance_uid=self.case.study.study_instance_uid, orthanc_study_id="",
                  inputs={"plan": {"orthanc_id": _ids(plan_id)[0]}, "recompute_job": RECOMPUTE_JOB})
        self.store.create(job)
        settings = SimpleNamespace(database_url=self.url)
        return check.compute(self.store.get(job.id), self.orthanc, settings, self.store)  # type: ignore[arg-type]


def _ids(raw: bytes) -> list[str]:
    import json

    return json.loads(raw)


def test_a_plan_dose_equal_to_the_recompute_passes_and_everything_is_stored(tmp_path):
    w = World(tmp_path)
    w.tps(tps_rtdose(w.case, w.grid, w.case.plan, name="same"))
    out = w.run()
    assert out["verdict"] == "pass" and out["pass_rate_percent"] == 100.0
    record = CheckStore(w.url).get("check-unit")
    assert record.verdict == "pass" and record.results["high_dose_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert {r["name"] for r in record.results["rois"]} >= {"TargetVolume", "External"}
    assert record.provenance["engine"].startswith("MCsquare") and record.provenance["requested_by"] == "unit"
    for name in ("difference", "gamma", "report"):
        stored = w.orthanc.resources[out[name]["orthanc_id"]].dataset
        assert stored.StudyInstanceUID == w.case.study.study_instance_uid
    assert w.orthanc.resources[out["report"]["orthanc_id"]].dataset.SOPClassUID == sop.ENCAPSULATED_PDF
    difference = w.orthanc.resources[out["difference"]["orthanc_id"]].dataset
    assert difference.DoseType == "ERROR" and difference.PixelRepresentation == 1


def test_dose_in_the_air_is_not_compared_nor_sets_the_normalisation(tmp_path):
    """A TPS dose with Monte Carlo noise in the air (as an unrestricted MC dose has: 8.7 Gy in air for a 2.9 Gy
    maximum in the pelvis phantom) must not fail a correct dose nor set the global 3 %."""
    w = World(tmp_path)
    noisy = np.array(w.grid.dose_gy)
    assert not w.case.external_mask[0, 0, 0]  # a corner of the field of view, in air
    noisy[0, 0, 0] = 300.0
    w.tps(tps_rtdose(w.case, replace(w.grid, dose_gy=noisy), w.case.plan, name="air"))
    out = w.run()
    assert out["verdict"] == "pass" and out["pass_rate_percent"] == 100.0
    assert any("compared inside the patient (ROI 'External'" in note and "300 Gy" in note for note in out["notes"])
    record = CheckStore(w.url).get("check-unit")
    assert record.results["reference"]["max_gy"] < 2.01  # the maximum in the patient, not the air's 300 Gy


def test_a_5_percent_dose_error_fails_on_the_dose_level_even_where_gamma_passes(tmp_path):
    """A plan delivering 5 % more than its TPS dose: global 3 %/2 mm lets most points pass (the gradient is
    within 2 mm almost everywhere in this smooth dose); the dose level does not."""
    w = World(tmp_path)
    w.tps(tps_rtdose(w.case, replace(w.grid, dose_gy=w.grid.dose_gy / 1.05), w.case.plan, name="mu"))
    out = w.run()
    assert out["verdict"] == "fail", out["reason"]
    assert out["reason"].startswith("median dose ratio in the high-dose region 1.050 (5.0 % off, above the action")
    assert "gamma 3%/2mm pass rate" in out["reason"]


def test_a_fraction_dose_is_scaled_by_the_fractions_planned(tmp_path):
    w = World(tmp_path, fractions=5)
    one = replace(w.grid, dose_gy=w.grid.dose_gy / 5)
    w.tps(tps_rtdose(w.case, one, w.case.plan, name="fraction", summation="FRACTION"))
    out = w.run()
    assert out["verdict"] == "pass", out["reason"]
    assert any("5 fractions planned" in note for note in out["notes"])


def test_beam_doses_are_summed_and_the_check_waits_for_every_beam(tmp_path):
    w = World(tmp_path, beams=2)
    parts = [tps_rtdose(w.case, replace(w.grid, dose_gy=w.grid.dose_gy * share), w.case.plan, name=f"beam{n}",
                        summation="BEAM") for n, share in ((1, 0.3), (2, 0.7))]
    for n, ds in enumerate(parts, start=1):
        item = ds.ReferencedRTPlanSequence[0]
        group, beam = Dataset(), Dataset()
        beam.ReferencedBeamNumber = n
        group.ReferencedBeamSequence = [beam]
        item.ReferencedFractionGroupSequence = [group]
    w.tps(parts[0])
    with pytest.raises(InputNotReady, match="beams 2"):
        w.run()
    w.store.transition("check-unit", jobs.RUNNING, from_states=[jobs.RUNNING])
    w.tps(parts[1])
    out = check.compute(w.store.get("check-unit"), w.orthanc, SimpleNamespace(database_url=w.url), w.store)
    assert out["verdict"] == "pass" and out["pass_rate_percent"] == 100.0
    assert any("2 BEAM doses summed" in note for note in out["notes"])


def test_an_rbe_weighted_dose_labelled_physical_fails_unless_its_manufacturer_is_configured(tmp_path):
    w = World(tmp_path)
    w.tps(tps_rtdose(w.case, replace(w.grid, dose_gy=w.grid.dose_gy * 1.1), w.case.plan, name="rbe"))
    out = w.run()
    assert out["verdict"] == "fail" and "RBE 1.1 convention mismatch?" in out["reason"]
    record = CheckStore(w.url).get("check-unit")
    assert record.results["high_dose_ratio"] == pytest.approx(1 / 1.1, abs=2e-3)
    (tmp_path / "configured").mkdir()
    configured = World(tmp_path / "configured")
    configured.tps(tps_rtdose(configured.case, replace(configured.grid, dose_gy=configured.grid.dose_gy * 1.1),
                              configured.case.plan, name="rbe"))
    out = configured.run(CheckParams(rbe_by_manufacturer=(("raysearch laboratories", "rbe-1.1"),)))
    assert out["verdict"] == "pass" and any("multiplied by 1.1" in note for note in out["notes"])


def test_a_tps_grid_that_cuts_through_the_target_fails_the_check_readably(tmp_path):
    w = World(tmp_path)
    cx = w.case.target_center_mm[0]
    x = w.grid.origin_mm[0] + w.grid.spacing_mm[0] * np.arange(w.grid.dose_gy.shape[2])
    keep = x <= cx  # half of the target only
    cut = replace(w.grid, dose_gy=np.ascontiguousarray(w.grid.dose_gy[:, :, keep]))
    w.tps(tps_rtdose(w.case, cut, w.case.plan, name="cut"))
    with pytest.raises(DicomInputError, match="does not cover the target TargetVolume"):
        w.run()


def test_a_recompute_that_failed_fails_the_check_with_its_reason(tmp_path):
    w = World(tmp_path)
    w.tps(tps_rtdose(w.case, w.grid, w.case.plan, name="same"))
    w.store.transition(RECOMPUTE_JOB, jobs.FAILED, from_states=[jobs.SUCCEEDED], message="MCsquare crashed",
                       actor="unit")
    with pytest.raises(DicomInputError, match="MCsquare crashed"):
        w.run()
