"""What every builder shares: input checks, the dataset header and file meta, plan skeletons, value formatting.

Each object family's module (ct, rtstruct, ion_plan, photon_plan, dose, sr)
builds its own object on top of this; nothing here is used by the readers.
Builders check their inputs first and raise DicomInputError naming what is
wrong, then return pydicom Datasets with file meta (Explicit VR Little
Endian), the right SOP class and the modules their IOD requires. UIDs come
from the caller (derived with `orthanc_rt.dicom.uids.derive_uid`, so retried
jobs give the same objects). Every object is written for a head-first-supine
patient (PatientPosition HFS) on an axis-aligned grid, as the readers require.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DSfloat

import orthanc_rt
from orthanc_rt.dicom import sop
from orthanc_rt.dicom.models import PatientStudy
from orthanc_rt.dicom.uids import MANUFACTURER, derive_uid, is_valid_uid
from orthanc_rt.errors import DicomInputError

PATIENT_POSITION = "HFS"
IDENTITY_ORIENTATION = [1, 0, 0, 0, 1, 0]
_IMPLEMENTATION_CLASS_UID = derive_uid("orthanc-rt", "implementation-class")
_IMPLEMENTATION_VERSION = f"ORTHANC_RT_{orthanc_rt.__version__}"[:16]


# --- the dataset skeleton ---------------------------------------------------------------------------------

def new_dataset(sop_class: str, sop_instance_uid: str, modality: str, study: PatientStudy, *,
                series_instance_uid: str, series_number: int, series_description: str, created: datetime,
                frame_of_reference: bool = True) -> Dataset:
    """File meta, SOP Common, Patient, General Study, series, equipment and (optionally) Frame of Reference."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: patient names need not be ASCII
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = dicom_date(created), dicom_time(created)
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyID = study.study_id
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyDescription = study.study_description
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate, ds.SeriesTime = dicom_date(created), dicom_time(created)
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MANUFACTURER
    ds.SoftwareVersions = orthanc_rt.__version__
    if frame_of_reference:
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
    return ds


def set_monochrome_pixels(ds: Dataset, pixels: np.ndarray, *, bits: int, signed: bool) -> None:
    """Image Pixel module of a grey-level image (CT slice, dose frames) from `pixels` as stored."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def plan_dataset(sop_class: str, study: PatientStudy, sop_instance_uid: str, series_instance_uid: str, label: str,
                 plan_name: str, series_description: str, series_number: int, fractions_planned: int,
                 created: datetime | None, beam_metersets: Sequence[tuple[int, float]],
                 structure_set_uid: str | None, dose_uid: str | None) -> Dataset:
    """An RT Plan or RT Ion Plan without its beams: identity, label, references, patient setup, one fraction group
    (`beam_metersets`: (beam number, BeamMeterset) of each beam)."""
    when = created or datetime.now()
    ds = new_dataset(sop_class, sop_instance_uid, "RTPLAN", study, series_instance_uid=series_instance_uid,
                     series_number=series_number, series_description=series_description, created=when)
    ds.InstanceNumber = 1
    ds.RTPlanLabel = label
    ds.RTPlanName = plan_name or label
    ds.RTPlanDate, ds.RTPlanTime = dicom_date(when), dicom_time(when)
    _set_plan_references(ds, structure_set_uid, dose_uid)
    ds.PatientSetupSequence = [seq_item(PatientSetupNumber=1, PatientPosition=PATIENT_POSITION,
                                    SetupTechnique="ISOCENTRIC")]
    ds.FractionGroupSequence = [seq_item(
        FractionGroupNumber=1, NumberOfFractionsPlanned=int(fractions_planned), NumberOfBeams=len(beam_metersets),
        NumberOfBrachyApplicationSetups=0,
        ReferencedBeamSequence=[seq_item(ReferencedBeamNumber=number, BeamMeterset=ds_value(meterset))
                                for number, meterset in beam_metersets],
    )]
    return ds


def _set_plan_references(ds: Dataset, structure_set_uid: str | None, dose_uid: str | None) -> None:
    """The structure set the plan was made on (RTPlanGeometry PATIENT, as the standard ties them) and its dose."""
    if structure_set_uid:
        ds.RTPlanGeometry = "PATIENT"
        ds.ReferencedStructureSetSequence = [reference(sop.RT_STRUCTURE_SET, structure_set_uid)]
    else:
        ds.RTPlanGeometry = "TREATMENT_DEVICE"
    if dose_uid:
        ds.ReferencedDoseSequence = [reference(sop.RT_DOSE, dose_uid)]


# --- values -----------------------------------------------------------------------------------------------

def seq_item(**attributes: object) -> Dataset:
    """A sequence item with `attributes` set in the order given."""
    entry = Dataset()
    for keyword, value in attributes.items():
        setattr(entry, keyword, value)
    return entry


def reference(sop_class: str, sop_instance: str) -> Dataset:
    """A Referenced SOP item (class and instance)."""
    return seq_item(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_instance)


def ds_value(value: float) -> DSfloat:
    """`value` as a DS; DS holds at most 16 characters and auto_format keeps as many digits as fit."""
    return DSfloat(float(value), auto_format=True)


def ds_values(values: Iterable[float]) -> list[DSfloat]:
    return [ds_value(v) for v in values]


def dicom_date(when: datetime) -> str:
    return when.strftime("%Y%m%d")


def dicom_time(when: datetime) -> str:
    return when.strftime("%H%M%S")


# --- checks -----------------------------------------------------------------------------------------------

def check_uid(value: str, what: str) -> None:
    if not is_valid_uid(value):
        raise DicomInputError(f"{what} {value!r} is not a valid DICOM UID (digits and dots, at most 64 characters)")


def check_text(value: str, what: str, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit or "\\" in value:
        raise DicomInputError(f"{what} must be text of at most {limit} characters without backslashes, "
                              f"not {value!r}")


def check_study(study: PatientStudy) -> None:
    check_uid(study.study_instance_uid, "study_instance_uid")
    check_uid(study.frame_of_reference_uid, "frame_of_reference_uid")
    check_text(study.patient_id, "patient_id", 64)
    check_text(study.study_id, "study_id", 16)
    check_text(study.study_description, "study_description", 64)


def check_same_frame(frame_of_reference_uid: str, study: PatientStudy, what: str) -> None:
    if frame_of_reference_uid and frame_of_reference_uid != study.frame_of_reference_uid:
        raise DicomInputError(f"{what} is in FrameOfReferenceUID {frame_of_reference_uid}, the study "
                              f"{study.frame_of_reference_uid}")


def check_grid(values: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
               frame_of_reference_uid: str, study: PatientStudy, what: str) -> None:
    """A volume the image-like builders can write: 3-D, finite, on a valid grid in the study's frame."""
    if values.ndim != 3 or values.size == 0:
        raise DicomInputError(f"{what}: expected a non-empty [z, y, x] volume, got shape {values.shape}")
    if len(origin_mm) != 3 or not np.all(np.isfinite(origin_mm)):
        raise DicomInputError(f"{what}: origin {tuple(origin_mm)} must be three finite numbers (mm)")
    if len(spacing_mm) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing_mm):
        raise DicomInputError(f"{what}: spacing {tuple(spacing_mm)} must be three positive numbers (mm)")
    check_same_frame(frame_of_reference_uid, study, what)
    if not np.all(np.isfinite(values)):
        raise DicomInputError(f"{what}: values must be finite (NaN or infinity found)")


def check_plan_header(study: PatientStudy, sop_instance_uid: str, series_instance_uid: str, label: str,
                      plan_name: str, series_description: str, fractions_planned: int,
                      structure_set_uid: str | None, dose_uid: str | None) -> None:
    """What an RT Plan and an RT Ion Plan check alike, before their beams."""
    check_study(study)
    check_uid(sop_instance_uid, "sop_instance_uid")
    check_uid(series_instance_uid, "series_instance_uid")
    if structure_set_uid is not None:
        check_uid(structure_set_uid, "referenced_structure_set_uid")
    if dose_uid is not None:
        check_uid(dose_uid, "referenced_dose_uid")
    check_text(label, "label", 16)
    check_text(plan_name, "plan_name", 64)
    check_text(series_description, "series_description", 64)
    if isinstance(fractions_planned, bool) or not isinstance(fractions_planned, (int, np.integer)) \
            or fractions_planned < 1:
        raise DicomInputError(f"fractions_planned must be a whole number of at least 1, not {fractions_planned!r}")


def check_beam_numbers(numbers: Sequence[int], what: str, max_beams: int) -> None:
    """A plan's beams (`what`: "ion plan", "photon plan"): some, not too many, numbered distinctly from 1 up."""
    if not numbers:
        raise DicomInputError(f"{what}: no beams")
    if len(numbers) > max_beams:
        raise DicomInputError(f"{what}: {len(numbers)} beams; at most {max_beams}")
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        raise DicomInputError(f"{what}: beam numbers must be distinct and positive, not {list(numbers)}")


def check_isocenter(isocenter_mm: Sequence[float], where: str) -> None:
    if len(isocenter_mm) != 3 or not np.all(np.isfinite(isocenter_mm)):
        raise DicomInputError(f"{where}: isocenter_mm {isocenter_mm!r} must be three finite numbers")
