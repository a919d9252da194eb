"""Finding and fetching a job's DICOM inputs in Orthanc (workers, and the plugin's dose overlays).

A plan's CT is found through explicit references first (plan → RTSTRUCT →
CT series), then by FrameOfReferenceUID within the plan's study; never by
guessing from the study alone. When the RTSTRUCT the plan names is not in
Orthanc (UIDs often change on export or anonymisation) but a CT on the
plan's frame of reference is, that CT is used and `SeriesRef.found_by` says
so. A CT that is absent or still arriving is `InputNotReady`: the job waits
instead of failing; a plan that names neither (no CT can ever match it) is a
`DicomInputError` at once.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from pydicom.dataset import Dataset

from orthanc_rt.dicom.models import PatientStudy
from orthanc_rt.dicom.rtstruct import referenced_ct_series
from orthanc_rt.dicom.serialize import from_bytes
from orthanc_rt.errors import DicomInputError, InputNotReady, OrthancError
from orthanc_rt.pacs.client import OrthancApi, get_json
from orthanc_rt.pacs.resources import find_instance, instance_tag, study_series

_FRAME_OF_REFERENCE = "0020,0052"


@dataclass(frozen=True)
class SeriesRef:
    orthanc_id: str
    series_instance_uid: str
    instance_ids: tuple[str, ...]
    # How locate_plan_ct found a plan's CT ("" for series found otherwise), and whether it had to fall back
    # on the frame of reference because the structure set the plan names is not in Orthanc.
    found_by: str = ""
    structure_set_missing: bool = False


def read_instance(api: OrthancApi, instance_id: str) -> Dataset:
    try:
        data = api.get_bytes(f"/instances/{instance_id}/file")
    except OrthancError as exc:
        if exc.status == 404:
            raise DicomInputError(f"instance {instance_id} is no longer in Orthanc (deleted?)") from None
        raise
    try:
        return from_bytes(data)
    except Exception as exc:
        raise DicomInputError(f"instance {instance_id} is not readable DICOM: {exc}") from None


def locate_plan_ct(api: OrthancApi, *, orthanc_study_id: str, frame_of_reference_uid: str,
                   structure_set_uid: str | None) -> SeriesRef:
    """The CT series a plan was made on, complete (stable) in Orthanc."""
    if not structure_set_uid and not frame_of_reference_uid:
        raise DicomInputError("the plan names neither a structure set (ReferencedStructureSetSequence, 300C,0060) "
                              "nor a FrameOfReferenceUID (0020,0052): no CT can be matched to it")
    series_uid = None
    missing_structure_set = False
    if structure_set_uid:
        ss_id = find_instance(api, structure_set_uid)
        if ss_id is None:
            missing_structure_set = True
        else:
            series_uid = referenced_ct_series(read_instance(api, ss_id))
    candidates = [s for s in study_series(api, orthanc_study_id) if s["MainDicomTags"].get("Modality") == "CT"]
    if series_uid:
        chosen = [s for s in candidates if s["MainDicomTags"].get("SeriesInstanceUID") == series_uid]
    elif frame_of_reference_uid:
        chosen = [s for s in candidates if s["Instances"]
                  and instance_tag(api, s["Instances"][0], _FRAME_OF_REFERENCE) == frame_of_reference_uid]
    else:
        chosen = []
    if not chosen:
        if missing_structure_set:
            also = (f" nor a CT series with FrameOfReferenceUID {frame_of_reference_uid}"
                    if frame_of_reference_uid else "")
            raise InputNotReady(f"waiting for the plan's CT: the RTSTRUCT {structure_set_uid} it references is "
                                f"not in Orthanc{also} in the plan's study")
        wanted = (f"CT series {series_uid}" if series_uid
                  else f"a CT series with FrameOfReferenceUID {frame_of_reference_uid}")
        raise InputNotReady(f"waiting for {wanted} in the plan's study")
    series = max(chosen, key=lambda s: len(s["Instances"]))  # the fullest if several were sent
    ref = complete_series(api, series["ID"])
    if missing_structure_set:
        found_by = f"frame of reference (the RTSTRUCT {structure_set_uid} the plan names is not in Orthanc)"
    elif series_uid:
        found_by = f"the plan's RTSTRUCT {structure_set_uid}"
    else:
        found_by = "frame of reference"
    ref = replace(ref, found_by=found_by, structure_set_missing=missing_structure_set)
    found_for = instance_tag(api, ref.instance_ids[0], _FRAME_OF_REFERENCE)
    if frame_of_reference_uid and found_for != frame_of_reference_uid:  # a plan may omit its frame of reference
        raise DicomInputError(f"the CT series {ref.series_instance_uid} referenced by the "
                              f"structure set has FrameOfReferenceUID {found_for}, the plan {frame_of_reference_uid}")
    return ref


def complete_series(api: OrthancApi, orthanc_series_id: str) -> SeriesRef:
    """The series as Orthanc holds it now; InputNotReady until Orthanc reports it stable."""
    series = get_json(api, f"/series/{orthanc_series_id}")
    uid = series["MainDicomTags"].get("SeriesInstanceUID", "")
    if not series.get("IsStable", True):  # resumed when Orthanc reports the series stable
        raise InputNotReady(f"CT series {uid} is still arriving ({len(series['Instances'])} slices so far)")
    return SeriesRef(series["ID"], uid, tuple(series["Instances"]))


def fetch_series(api: OrthancApi, series: SeriesRef, *, threads: int = 4) -> list[Dataset]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda iid: read_instance(api, iid), series.instance_ids))


def study_of(ct: Dataset) -> PatientStudy:
    """The patient and study of a CT slice, for the results made from it (same study, same frame)."""
    return PatientStudy(
        patient_id=str(ct.get("PatientID", "")),
        patient_name=str(ct.get("PatientName", "")),
        study_instance_uid=str(ct.StudyInstanceUID),
        frame_of_reference_uid=str(ct.FrameOfReferenceUID),
        study_id=str(ct.get("StudyID", "")),
        study_description=str(ct.get("StudyDescription", "")),
        study_date=str(ct.get("StudyDate", "")),
        study_time=str(ct.get("StudyTime", "")),
        patient_birth_date=str(ct.get("PatientBirthDate", "")),
        patient_sex=str(ct.get("PatientSex", "")),
    )
