"""DVH maths: checked against dicompyler-core's dvhcalc (the oracle) and against exact geometry."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from orthanc_rt.analysis import dvh
from orthanc_rt.analysis.dose_analysis import analyse
from orthanc_rt.dicom.rtstruct import Roi, read_structure_set
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.errors import DicomInputError
from orthanc_rt.scheduling.params import AnalysisParams
from tests.support.cases import dvh_case, on_other_frame, with_bad_rois
from tests.support.oracle import ORACLE_SCRIPT, oracle_python

REPO = Path(__file__).resolve().parents[2]
ORACLE = "dicompyler-core 0.5.6"




def by_roi(result, metric):
    return {m.roi_name: m.value for m in result.measurements if m.metric == metric}


@pytest.fixture(scope="module")
def case():
    return dvh_case("oracle")


@pytest.fixture(scope="module")
def ours(case):
    return analyse(case.rtdose, case.rtstruct, case.ct, AnalysisParams(), job_id="unit")


def test_agrees_with_dicompyler_core(case, ours, tmp_path):
    """For ROIs of 5 cc or more: Dmean and D95 within 1 % of the ROI's max dose, volume within 3 %."""
    python = oracle_python()
    if python is None:
        if os.environ.get("ORTHANC_RT_REQUIRE_ORACLE") == "1":
            pytest.fail("oracle virtualenv missing: run scripts/install.sh --dev")
        pytest.skip("no .venv-oracle (scripts/install.sh --dev creates it)")
    (tmp_path / "rs.dcm").write_bytes(to_bytes(case.rtstruct))
    (tmp_path / "rd.dcm").write_bytes(to_bytes(case.rtdose))
    run = subprocess.run([python, str(ORACLE_SCRIPT), str(tmp_path / "rs.dcm"), str(tmp_path / "rd.dcm")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    oracle = json.loads(run.stdout)
    assert oracle["oracle"] == ORACLE
    volume, mean, d95, dmax = (by_roi(ours, m) for m in ("volume", "Dmean", "D95", "Dmax"))
    checked = []
    for name, ref in oracle["rois"].items():
        if ref["volume_cc"] < 5.0:
            continue
        checked.append(name)
        tolerance = 0.01 * ref["max_gy"]
        assert volume[name] == pytest.approx(ref["volume_cc"], rel=0.03), name
        assert abs(mean[name] - ref["mean_gy"]) <= tolerance, (name, mean[name], ref)
        assert abs(d95[name] - ref["d95_gy"]) <= tolerance, (name, d95[name], ref)
        assert abs(dmax[name] - ref["max_gy"]) <= tolerance, (name, dmax[name], ref)
    assert sorted(checked) == ["Body", "Cord", "PTV", "Shell"]


def test_volumes_match_the_masks(case, ours):
    """Contours follow voxel edges of the 2 mm CT: on that grid the ROI volume is the voxel count."""
    structures = read_structure_set(case.rtstruct)
    from orthanc_rt.dicom.ct import read_ct_series

    ct = read_ct_series(case.ct)
    ptv = next(r for r in structures.rois if r.name == "PTV")
    sample = dvh.sample_roi(ptv, ct.hu, ct.origin_mm, ct.spacing_mm, interpolate_z=False)
    sphere = 4 / 3 * np.pi * 16.0 ** 3 / 1000
    assert sample.volume_cc == pytest.approx(sphere, rel=0.03)
    assert by_roi(ours, "volume")["PTV"] == pytest.approx(sphere, rel=0.05)


def test_hole_is_removed_by_even_odd_rule():
    square = lambda h: np.array([[-h, -h], [h, -h], [h, h], [-h, h]], float)  # noqa: E731
    xs = ys = np.arange(-10.0, 10.5, 1.0)
    mask = dvh.plane_mask([square(8.5), square(3.5)], xs, ys)
    assert mask.sum() == 17 * 17 - 7 * 7
    assert not mask[10, 10] and mask[10, 2]


def test_metrics_on_known_doses():
    sample = dvh.RoiSample(values=np.arange(1.0, 101.0), voxel_cc=0.5)
    stats = dvh.dose_stats(sample, d_at_volume_pct=[95, 50, 2], v_at_dose_gy=[20, 101])
    assert stats.volume_cc == 50.0 and stats.d_mean == pytest.approx(50.5)
    # D x% comes from a 65536-bin histogram between Dmin and Dmax: exact to one bin.
    assert stats.d_at_volume == pytest.approx({95.0: 6.0, 50.0: 51.0, 2.0: 99.0}, abs=99 / 65535)
    assert stats.v_at_dose == {20.0: 81.0, 101.0: 0.0}
    assert stats.cumulative_pct[0] == 100.0 and stats.cumulative_pct[-1] == 0.0


def test_rows_carry_provenance(case, ours):
    row = next(m for m in ours.measurements if m.metric == "Dmean" and m.roi_name == "PTV")
    assert row.dose_sop_instance_uid == str(case.rtdose.SOPInstanceUID)
    assert row.structure_set_sop_instance_uid == str(case.rtstruct.SOPInstanceUID)
    assert row.ct_series_instance_uid == str(case.ct[0].SeriesInstanceUID)
    assert row.study_instance_uid == case.study.study_instance_uid
    assert (row.source, row.unit, row.job_id, row.roi_number) == ("dvh", "Gy", "unit", 2)
    metrics = {m.metric for m in ours.measurements if m.roi_name == "PTV"}
    assert {"volume", "Dmin", "Dmean", "Dmax", "D98", "D95", "D50", "D2", "V20Gy", "V95%",
            "HUmean", "HUmin", "HUmax", "HUstd"} <= metrics
    hu = by_roi(ours, "HUmean")
    assert hu["PTV"] > hu["Shell"]  # the PTV is 40 HU denser
    assert len(ours.curves) == 5 and all(c.volume_pct["values"][0] == 100.0 for c in ours.curves)


def test_bad_rois_are_skipped_with_reasons(case):
    result = analyse(case.rtdose, with_bad_rois(case.rtstruct), None, AnalysisParams(), job_id="bad")
    reasons = {s["roi_name"]: s["reason"] for s in result.skipped}
    assert set(reasons) == {"Empty", "Degenerate"}
    assert "no usable contours" in reasons["Empty"]
    assert "2 points" in reasons["Degenerate"]
    assert "no CT" in result.notes[0]
    assert len(result.curves) == 5


def test_other_frame_of_reference_is_refused(case):
    with pytest.raises(DicomInputError, match="FrameOfReferenceUID"):
        analyse(on_other_frame(case.rtdose), case.rtstruct, None, AnalysisParams(), job_id="x")


def test_roi_outside_the_grid_is_skipped(case):
    roi = Roi(number=9, name="Far", contours=[(500.0, np.array([[0, 0], [5, 0], [5, 5]], float))])
    sample = dvh.sample_roi(roi, np.zeros((3, 4, 4)), (0, 0, 0), (1, 1, 1), interpolate_z=True)
    assert sample.values.size == 0 and sample.planes_outside == [500.0]
