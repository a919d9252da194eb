"""The in-memory Orthanc of the trigger tests (tests/support/fake_orthanc.py) answers as the real one does.

The trigger tests' datasets are stored in the stack's Orthanc (REST upload) and in the fake; every call the
triggers and their lookups make is asked of both, and what the triggers read from the answers must agree.
The datasets start nothing expensive on the stack: the plan names its stored dose (no dose job), the
analysis is a DVH of a small grid, and no ROI matches the stack's planning rule.
"""
from __future__ import annotations

import pytest

from orthanc_rt.pacs.client import HttpOrthanc, get_json
from orthanc_rt.pacs.resources import (
    find_instance,
    find_instances,
    find_study,
    frame_of_reference_of,
    instance_ref,
    instance_tag,
    sop_class_of,
    study_series,
)
from orthanc_rt.pacs.structure_sets import StructureSetIndex
from tests.support.cases import trigger_case
from tests.support.fake_orthanc import FakeOrthanc
from tests.support.senders import rest_upload

CASE = trigger_case("fake-pin")
DATASETS = [*CASE.dvh.ct, CASE.dvh.rtstruct, CASE.dvh.rtdose, CASE.report, CASE.plan_with_dose]
TAGS = ("0020,0052", "3006,0010/0/0020,0052", "0040,a504/0/0040,db00", "0010,0020", "300c,0080/0/0008,1155",
        "0008,0060", "9999,0010")  # the last one absent everywhere


@pytest.fixture(scope="module")
def both(rt_stack):
    rest_upload(rt_stack.orthanc_url, DATASETS)
    return HttpOrthanc(rt_stack.orthanc_url), FakeOrthanc(DATASETS)


def _ids(real, fake) -> list[str]:
    """Orthanc ids of our instances, found in the real Orthanc by SOPInstanceUID; the fake must use the same."""
    found = [find_instance(real, str(ds.SOPInstanceUID)) for ds in DATASETS]
    assert None not in found
    assert found == [find_instance(fake, str(ds.SOPInstanceUID)) for ds in DATASETS]
    return found


def test_instances_series_and_studies_read_the_same(both):
    real, fake = both
    for instance_id in _ids(real, fake):
        assert sop_class_of(fake, instance_id) == sop_class_of(real, instance_id)
        assert instance_ref(fake, instance_id) == instance_ref(real, instance_id)
        for modality in ("RTSTRUCT", "RTDOSE"):
            assert frame_of_reference_of(fake, instance_id, modality) == \
                frame_of_reference_of(real, instance_id, modality)
        for tag in TAGS:
            assert instance_tag(fake, instance_id, tag) == instance_tag(real, instance_id, tag), tag
        _same_resource(get_json(fake, f"/instances/{instance_id}"), get_json(real, f"/instances/{instance_id}"))
        _same_resource(get_json(fake, f"/instances/{instance_id}/study"),
                       get_json(real, f"/instances/{instance_id}/study"))
        series_id = get_json(real, f"/instances/{instance_id}")["ParentSeries"]
        _same_resource(get_json(fake, f"/series/{series_id}"), get_json(real, f"/series/{series_id}"))
    study_id = instance_ref(real, _ids(real, fake)[0]).orthanc_study_id
    fake_series, real_series = study_series(fake, study_id), study_series(real, study_id)
    assert sorted(s["ID"] for s in fake_series) == sorted(s["ID"] for s in real_series)
    for fake_one in fake_series:
        _same_resource(fake_one, next(s for s in real_series if s["ID"] == fake_one["ID"]))


def _same_resource(fake: dict, real: dict) -> None:
    """The fake's fields are the real ones (it keeps a subset of the main tags), child lists in any order."""
    for key, value in fake.items():
        if key in ("MainDicomTags", "PatientMainDicomTags"):
            assert value.items() <= real[key].items(), (key, value, real[key])
        elif key in ("Instances", "Series", "Studies"):
            assert set(value) <= set(real[key]), key  # the stack may add results (reports) beside ours
        else:
            assert value == real[key], key


def test_find_and_the_plan_dose_lookup_answer_the_same(both):
    real, fake = both
    _ids(real, fake)
    study, patient = CASE.dvh.study.study_instance_uid, CASE.dvh.study.patient_id
    for modality in ("RTSTRUCT", "RTDOSE", "SR", "RTPLAN", "CT"):
        fake_found = find_instances(fake, modality, StudyInstanceUID=study)
        assert set(fake_found) <= set(find_instances(real, modality, StudyInstanceUID=study)), modality
        assert set(find_instances(fake, modality, PatientID=patient)) <= \
            set(find_instances(real, modality, PatientID=patient)), modality
    assert find_study(fake, study) == find_study(real, study)
    assert find_instance(fake, "1.2.3.4.5.404") is None and find_instance(real, "1.2.3.4.5.404") is None
    plan_id = find_instance(real, str(CASE.plan_with_dose.SOPInstanceUID))
    referenced_dose = "300c,0080/0/0008,1155"  # a nested tag, as the triggers read ReferencedRTPlanSequence
    assert instance_tag(fake, plan_id, referenced_dose) == instance_tag(real, plan_id, referenced_dose) \
        == str(CASE.dvh.rtdose.SOPInstanceUID)


def test_structure_set_lookups_for_planning_agree(both):
    real, fake = both
    study_id = instance_ref(real, _ids(real, fake)[0]).orthanc_study_id
    fake_index, real_index = StructureSetIndex(fake), StructureSetIndex(real)
    assert fake_index.study_id(CASE.dvh.study.study_instance_uid) == real_index.study_id(
        CASE.dvh.study.study_instance_uid) == study_id
    assert fake_index.of_study(study_id) == real_index.of_study(study_id)
    assert fake_index.ct_series(study_id) == real_index.ct_series(study_id)
    [summary] = real_index.of_study(study_id)
    assert fake_index.planning_ct(study_id, summary) == real_index.planning_ct(study_id, summary)


def test_unknown_resources_are_404_in_both(both):
    real, fake = both
    for path in ("/instances/00000000-00000000-00000000-00000000-00000000", "/series/nope", "/studies/nope"):
        for api in (real, fake):
            with pytest.raises(Exception) as raised:
                api.get_bytes(path)
            assert getattr(raised.value, "status", None) == 404, (api, path)
