"""Before any Monte Carlo: a plan that names no CT fails at once, an isocentre outside the CT is a warning and one
far outside fails with the coordinates to check."""
from __future__ import annotations

import pytest

from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.errors import DicomInputError
from orthanc_rt.pacs.inputs import locate_plan_ct
from tests.support import cases as util
from worker.jobs.dose import MAX_ISOCENTRE_OUTSIDE_MM, beams_outside

CASE = util.small_phantom_case("geometry")  # water 42 x 150 x 36 mm and one voxel of air: x ±24, y ±78, z ±21


def test_ct_bounds_are_the_outer_faces_of_the_edge_voxels():
    ct = CASE.ct_volume
    assert ct.bounds_mm() == ((-24.0, 24.0), (-78.0, 78.0), (-21.0, 21.0))
    assert ct.distance_outside_mm((0.0, 0.0, 0.0)) == 0 and ct.distance_outside_mm((24.0, -78.0, 21.0)) == 0
    assert ct.distance_outside_mm((0.0, 100.0, 0.0)) == 22.0
    assert ct.distance_outside_mm((27.0, 82.0, 0.0)) == 5.0  # 3-4-5 from the corner edge


def test_a_plan_naming_neither_a_structure_set_nor_a_frame_of_reference_fails_without_asking_orthanc():
    plan = read_ion_plan(util.plan_without_ct_references(CASE))
    with pytest.raises(DicomInputError, match="neither a structure set .* nor a FrameOfReferenceUID"):
        locate_plan_ct(None, orthanc_study_id="s", frame_of_reference_uid=plan.frame_of_reference_uid,  # type: ignore
                       structure_set_uid=plan.referenced_structure_set_uid)


def test_isocentres_inside_give_no_warning_outside_a_warning_far_outside_a_failure():
    assert beams_outside(read_ion_plan(CASE.plan), CASE.ct_volume) == []
    behind = read_ion_plan(util.plan_with_isocentre_shifted(CASE, (0.0, 125.0, 0.0)))
    assert beams_outside(behind, CASE.ct_volume) == ["isocentre of beam G0 is 22 mm outside the CT"]
    near = read_ion_plan(util.plan_with_isocentre_shifted(CASE, (MAX_ISOCENTRE_OUTSIDE_MM + 23.0, 0.0, 0.0)))
    assert len(beams_outside(near, CASE.ct_volume)) == 1  # 499 mm: still a warning
    far = read_ion_plan(util.plan_with_isocentre_shifted(CASE, (0.0, 1e6, 0.0)))
    with pytest.raises(DicomInputError, match=r"beams miss the CT: .* 999897 mm outside .* y -78\.\.78"):
        beams_outside(far, CASE.ct_volume)
