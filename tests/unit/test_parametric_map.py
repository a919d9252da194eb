"""LETd as a Parametric Map (orthanc_rt.dicom.parametric_map): round trip and validation."""
from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread

pytest.importorskip("highdicom")

from orthanc_rt.dicom.models import LetGrid  # noqa: E402
from orthanc_rt.dicom.parametric_map import LET_UNIT, PARAMETRIC_MAP, build_let_map, read_let_map  # noqa: E402
from orthanc_rt.dicom.serialize import to_bytes  # noqa: E402
from orthanc_rt.errors import DicomInputError  # noqa: E402
from tests.support.cases import small_phantom_case  # noqa: E402


@pytest.fixture(scope="module")
def case():
    return small_phantom_case("parametric-map")


def _let(case, values: np.ndarray | None = None) -> LetGrid:
    ct = case.ct_volume
    if values is None:
        values = np.random.default_rng(0).uniform(0, 12, size=(4, 5, 6)).astype(np.float32)
    return LetGrid(let_kev_um=values, origin_mm=(ct.origin_mm[0] + 3.0, ct.origin_mm[1], ct.origin_mm[2] + 1.5),
                   spacing_mm=(2.0, 2.5, 3.0), frame_of_reference_uid=ct.frame_of_reference_uid, threshold_gy=0.1)


def test_round_trip_keeps_values_units_geometry_and_references(case):
    let = _let(case)
    ds = build_let_map(let, case.ct, sop_instance_uid="2.25.11", series_instance_uid="2.25.12",
                       series_description="LETd (keV/um) MCsquare")
    back_ds = dcmread(io.BytesIO(to_bytes(ds)))
    back = read_let_map(back_ds)
    assert back_ds.SOPClassUID == PARAMETRIC_MAP and back_ds.StudyInstanceUID == case.study.study_instance_uid
    assert back_ds.FrameOfReferenceUID == case.ct_volume.frame_of_reference_uid
    unit = back_ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0].MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == (LET_UNIT, "UCUM")
    referenced = {item.SeriesInstanceUID for item in back_ds.ReferencedSeriesSequence}
    assert referenced == {case.ct[0].SeriesInstanceUID}
    # 16-bit levels of max/65000: the error is at most half a level.
    np.testing.assert_allclose(back.let_kev_um, let.let_kev_um, atol=float(let.let_kev_um.max()) / 65000)
    assert back.let_kev_um.shape == let.let_kev_um.shape
    np.testing.assert_allclose(back.origin_mm, let.origin_mm, atol=1e-4)
    np.testing.assert_allclose(back.spacing_mm, let.spacing_mm, atol=1e-4)


def test_an_all_zero_map_is_stored(case):
    back = read_let_map(dcmread(io.BytesIO(to_bytes(build_let_map(
        _let(case, np.zeros((2, 3, 4), np.float32)), case.ct, sop_instance_uid="2.25.13",
        series_instance_uid="2.25.14", series_description="LETd")))))
    assert not back.let_kev_um.any()


@pytest.mark.parametrize("change, message", [
    (dict(values=np.full((2, 2, 2), -1.0, np.float32)), "finite and not negative"),
    (dict(values=np.full((2, 2, 2), np.nan, np.float32)), "finite and not negative"),
    (dict(values=np.ones((2, 2), np.float32)), "3-D"),
    (dict(frame="2.25.99"), "is not the CT's"),
    (dict(uid="1.2.abc"), "not a valid DICOM UID"),
    (dict(description=""), "series_description"),
])
def test_bad_inputs_raise_specific_errors(case, change, message):
    let = _let(case, change.get("values"))
    if "frame" in change:
        let.frame_of_reference_uid = change["frame"]
    with pytest.raises(DicomInputError, match=message):
        build_let_map(let, case.ct, sop_instance_uid=change.get("uid", "2.25.15"), series_instance_uid="2.25.16",
                      series_description=change.get("description", "LETd"))


def test_reading_another_object_says_what_it_is(case):
    with pytest.raises(DicomInputError, match="is not Parametric Map"):
        read_let_map(case.ct[0])
