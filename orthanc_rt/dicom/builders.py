"""The one place DICOM objects are built: CT series, RTSTRUCT, RT Ion Plan, RTDOSE, TID 1500 SR.

Each builder checks its inputs first and raises DicomInputError naming what
is wrong, then returns pydicom Datasets with file meta (Explicit VR Little
Endian), the right SOP class and the modules their IOD requires, so Orthanc,
OHIF and the readers of this package accept them. UIDs come from the caller
(derived with `orthanc_rt.dicom.uids.derive_uid`, so retried jobs give the same
objects); the CT builder derives its slice UIDs from the series UID.

Every object is written for a head-first-supine patient (PatientPosition
HFS) on an axis-aligned grid, as the readers require.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import DSfloat

import orthanc_rt
from orthanc_rt.dicom import sop
from orthanc_rt.dicom.contours import slice_polygons
from orthanc_rt.dicom.ct import read_ct_geometry
from orthanc_rt.dicom.ion_plan import MAX_BEAMS, MAX_ENERGY_MEV, MODULATED_SCAN_MODES
from orthanc_rt.dicom.leaf_sequencing import SequencedBeam, SequencingError, sequence
from orthanc_rt.dicom.models import (
    CtVolume,
    DoseGrid,
    EnergyLayer,
    IonBeam,
    PatientStudy,
    PhotonBeam,
    RangeShifter,
    SrMeasurement,
)
from orthanc_rt.dicom.uids import derive_uid, is_valid_uid
from orthanc_rt.errors import DicomInputError

MANUFACTURER = "Orthanc-RT"
PATIENT_POSITION = "HFS"
_IMPLEMENTATION_CLASS_UID = derive_uid("orthanc-rt", "implementation-class")
_IMPLEMENTATION_VERSION = f"ORTHANC_RT_{orthanc_rt.__version__}"[:16]
_IDENTITY_ORIENTATION = [1, 0, 0, 0, 1, 0]

# CT pixels: HU + 1024 stored as signed 16 bit, the usual CT convention (air -1000 HU is stored as 24).
CT_RESCALE_INTERCEPT = -1024
_CT_HU_RANGE = (-32768 + CT_RESCALE_INTERCEPT, 32767 + CT_RESCALE_INTERCEPT)  # HU = stored + intercept

# RTDOSE pixels: unsigned 32 bit, DoseGridScaling = max dose / 4e9. Using 4e9 of the 4.29e9 available
# levels leaves room for DoseGridScaling's decimal-string rounding (16 characters) without overflow;
# the quantization error is at most max dose / 8e9 (1.25e-10 of the maximum).
_DOSE_LEVELS = 4.0e9

ROI_TYPES = ("EXTERNAL", "PTV", "CTV", "GTV", "ORGAN", "AVOIDANCE", "TREATED_VOLUME", "IRRADIATED_VOLUME",
             "BOLUS", "CAVITY", "SUPPORT", "FIXATION", "CONTROL", "DOSE_REGION", "MARKER", "ISOCENTER")
_ROI_COLOURS = ((255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 200, 0), (255, 0, 255), (0, 200, 200))
_DOSE_TYPES = ("PHYSICAL", "EFFECTIVE", "ERROR")
_SUMMATION_TYPES = ("PLAN", "MULTI_PLAN", "PLAN_OVERVIEW", "FRACTION", "BEAM", "BRACHY", "FRACTION_SESSION",
                    "BEAM_SESSION", "BRACHY_SESSION", "CONTROL_POINT", "RECORD")
# Our beams carry no source distance (the beam model has it); this is the usual order of magnitude.
_VIRTUAL_SOURCE_AXIS_DISTANCES_MM = (2000.0, 2000.0)
_DEFAULT_TUNE_ID = "NOMINAL"  # ScanSpotTuneID is Type 1: written when a layer has none


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write into an RTSTRUCT: a mask on the CT grid."""

    name: str
    mask: np.ndarray  # [z, y, x] bool, the CT's shape
    type: str = "ORGAN"  # RTROIInterpretedType: PTV, CTV, ORGAN, EXTERNAL, ...
    color: tuple[int, int, int] | None = None  # RGB 0-255; None picks one


def build_ct_series(volume: CtVolume, study: PatientStudy, *, series_instance_uid: str,
                    series_description: str = "CT (Orthanc-RT)", series_number: int = 1,
                    created: datetime | None = None) -> list[Dataset]:
    """One CT Image Storage dataset per z slice of `volume`, in z order.

    SOPInstanceUIDs are derived from the series UID and the slice index.
    HU are rounded to integers (stored + RescaleIntercept -1024).
    """
    _check_study(study)
    _check_uid(series_instance_uid, "series_instance_uid")
    _check_text(series_description, "series_description", 64)
    hu = np.asarray(volume.hu)
    _check_grid(hu, volume.origin_mm, volume.spacing_mm, volume.frame_of_reference_uid, study, "CT volume")
    low, high = float(hu.min()), float(hu.max())
    if low < _CT_HU_RANGE[0] or high > _CT_HU_RANGE[1]:
        raise DicomInputError(f"CT volume: HU range {low:g}..{high:g} does not fit 16-bit pixels "
                              f"({_CT_HU_RANGE[0]}..{_CT_HU_RANGE[1]})")
    stored = (np.rint(hu) - CT_RESCALE_INTERCEPT).astype("<i2")
    when = created or datetime.now()
    (ox, oy, oz), (sx, sy, sz) = volume.origin_mm, volume.spacing_mm
    slices = []
    for z in range(hu.shape[0]):
        ds = _new_dataset(sop.CT_IMAGE, derive_uid(series_instance_uid, "ct-slice", str(z)), "CT", study,
                          series_instance_uid=series_instance_uid, series_number=series_number,
                          series_description=series_description, created=when)
        ds.PatientPosition = PATIENT_POSITION
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.InstanceNumber = z + 1
        ds.AcquisitionNumber = None
        ds.KVP = None
        ds.PatientOrientation = None
        ds.ContentDate, ds.ContentTime = _date(when), _time(when)
        ds.ImageOrientationPatient = _IDENTITY_ORIENTATION
        ds.ImagePositionPatient = _ds_values((ox, oy, oz + z * sz))
        ds.SliceLocation = _ds_value(oz + z * sz)
        ds.SliceThickness = _ds_value(sz)
        ds.PixelSpacing = _ds_values((sy, sx))
        _set_monochrome_pixels(ds, stored[z], bits=16, signed=True)
        ds.RescaleIntercept = CT_RESCALE_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        slices.append(ds)
    return slices


def build_rtstruct(ct_datasets: Sequence[Dataset], study: PatientStudy, rois: Sequence[RoiSpec], *,
                   series_instance_uid: str, sop_instance_uid: str, label: str,
                   series_description: str = "Structures (Orthanc-RT)", series_number: int = 2,
                   created: datetime | None = None) -> Dataset:
    """An RT Structure Set of `rois` (masks on the grid of `ct_datasets`), one polygon per outline per slice.

    Contours run along voxel edges (see `contours`), are CLOSED_PLANAR and
    reference the CT slice they lie on; ReferencedFrameOfReferenceSequence
    names the CT series.
    """
    _check_study(study)
    _check_uid(series_instance_uid, "series_instance_uid")
    _check_uid(sop_instance_uid, "sop_instance_uid")
    _check_text(label, "label", 16)
    _check_text(series_description, "series_description", 64)
    geometry = read_ct_geometry(ct_datasets)
    _check_same_frame(geometry.frame_of_reference_uid, study, f"CT series {geometry.series_instance_uid}")
    if geometry.study_instance_uid and geometry.study_instance_uid != study.study_instance_uid:
        raise DicomInputError(f"CT series {geometry.series_instance_uid} belongs to study "
                              f"{geometry.study_instance_uid}, not {study.study_instance_uid}")
    _check_rois(rois, geometry.shape_zyx)
    when = created or datetime.now()
    ds = _new_dataset(sop.RT_STRUCTURE_SET, sop_instance_uid, "RTSTRUCT", study,
                      series_instance_uid=series_instance_uid, series_number=series_number,
                      series_description=series_description, created=when, frame_of_reference=False)
    ds.StructureSetLabel = label
    ds.StructureSetName = label
    ds.StructureSetDate, ds.StructureSetTime = _date(when), _time(when)
    ds.InstanceNumber = 1
    images = [_reference(sop.CT_IMAGE, uid) for uid in geometry.sop_instance_uids]
    ds.ReferencedFrameOfReferenceSequence = [_item(
        FrameOfReferenceUID=study.frame_of_reference_uid,
        RTReferencedStudySequence=[_item(
            ReferencedSOPClassUID=sop.DETACHED_STUDY_MANAGEMENT,
            ReferencedSOPInstanceUID=study.study_instance_uid,
            RTReferencedSeriesSequence=[_item(SeriesInstanceUID=geometry.series_instance_uid,
                                              ContourImageSequence=images)],
        )],
    )]
    ds.StructureSetROISequence = [
        _item(ROINumber=number, ReferencedFrameOfReferenceUID=study.frame_of_reference_uid, ROIName=roi.name,
              ROIGenerationAlgorithm="AUTOMATIC")
        for number, roi in enumerate(rois, start=1)]
    ds.ROIContourSequence = [
        _item(ReferencedROINumber=number, ROIDisplayColor=list(_colour(roi, number)),
              ContourSequence=_contours(roi.mask, geometry.origin_mm, geometry.spacing_mm, geometry.sop_instance_uids))
        for number, roi in enumerate(rois, start=1)]
    ds.RTROIObservationsSequence = [
        _item(ObservationNumber=number, ReferencedROINumber=number, ROIObservationLabel=roi.name[:16],
              RTROIInterpretedType=roi.type, ROIInterpreter=None)
        for number, roi in enumerate(rois, start=1)]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def build_ion_plan(study: PatientStudy, beams: Sequence[IonBeam], *, sop_instance_uid: str,
                   series_instance_uid: str, label: str, fractions_planned: int,
                   referenced_structure_set_uid: str | None = None, referenced_dose_uid: str | None = None,
                   plan_name: str = "", series_description: str = "Proton plan (Orthanc-RT)", series_number: int = 3,
                   treatment_machine: str = "", created: datetime | None = None) -> Dataset:
    """An RT Ion Plan (proton PBS) written as commercial planning systems write one.

    Each layer is a pair of control points: the first carries the spots and
    their weights, the second repeats the spot map with zero weights; a
    one-spot layer's weight is a number, not a list. Spot weights are the
    spots' MU (float32, as ScanSpotMetersetWeights is FL), so
    FinalCumulativeMetersetWeight is the beam's MU and BeamMeterset is
    `beam.meterset_mu`. RTPlanGeometry is PATIENT when a structure set is
    referenced, TREATMENT_DEVICE otherwise (the standard ties the two).
    `referenced_dose_uid` names the plan's RTDOSE (ReferencedDoseSequence), so
    plan and dose point at each other. `treatment_machine` is used for beams
    that name none.
    """
    _check_plan_header(study, sop_instance_uid, series_instance_uid, label, plan_name, series_description,
                       fractions_planned, referenced_structure_set_uid, referenced_dose_uid)
    _check_beams(beams)
    ds = _plan_dataset(sop.RT_ION_PLAN, study, sop_instance_uid, series_instance_uid, label, plan_name,
                       series_description, series_number, fractions_planned, created,
                       [(beam.number, beam.meterset_mu) for beam in beams], referenced_structure_set_uid,
                       referenced_dose_uid)
    ds.IonBeamSequence = [_ion_beam(beam, beam.treatment_machine or treatment_machine) for beam in beams]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def build_rtdose(grid: DoseGrid, study: PatientStudy, *, sop_instance_uid: str, series_instance_uid: str,
                 referenced_plan_uid: str, series_description: str,
                 referenced_plan_sop_class: str = sop.RT_ION_PLAN, content_description: str = "",
                 series_number: int = 4, created: datetime | None = None) -> Dataset:
    """An RT Dose of `grid` (Gy), referencing the plan it is the dose of.

    DoseType and DoseSummationType come from the grid (PHYSICAL and PLAN by
    default: the dose of all fractions). Pixels are unsigned 32 bit with
    DoseGridScaling = max / 4e9 (see _DOSE_LEVELS). GridFrameOffsetVector is
    relative (starts at 0). `content_description` goes to DoseComment.
    """
    _check_study(study)
    for value, what in ((sop_instance_uid, "sop_instance_uid"), (series_instance_uid, "series_instance_uid"),
                        (referenced_plan_uid, "referenced_plan_uid"),
                        (referenced_plan_sop_class, "referenced_plan_sop_class")):
        _check_uid(value, what)
    _check_text(series_description, "series_description", 64)
    _check_text(content_description, "content_description", 64)
    dose = np.asarray(grid.dose_gy)
    _check_grid(dose, grid.origin_mm, grid.spacing_mm, grid.frame_of_reference_uid, study, "dose grid")
    if dose.min() < 0:
        raise DicomInputError(f"dose grid: negative dose ({float(dose.min()):g} Gy)")
    if grid.dose_type not in _DOSE_TYPES:
        raise DicomInputError(f"dose grid: dose_type {grid.dose_type!r} is not one of {', '.join(_DOSE_TYPES)}")
    if grid.summation_type not in _SUMMATION_TYPES:
        raise DicomInputError(f"dose grid: summation_type {grid.summation_type!r} is not a DoseSummationType")
    when = created or datetime.now()
    ds = _new_dataset(sop.RT_DOSE, sop_instance_uid, "RTDOSE", study, series_instance_uid=series_instance_uid,
                      series_number=series_number, series_description=series_description, created=when)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = _date(when), _time(when)
    (ox, oy, oz), (sx, sy, sz) = grid.origin_mm, grid.spacing_mm
    frames = dose.shape[0]
    ds.ImageOrientationPatient = _IDENTITY_ORIENTATION
    ds.ImagePositionPatient = _ds_values((ox, oy, oz))
    ds.PixelSpacing = _ds_values((sy, sx))
    ds.SliceThickness = _ds_value(sz)
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x3004000C  # GridFrameOffsetVector
    ds.GridFrameOffsetVector = _ds_values(k * sz for k in range(frames))
    peak = float(dose.max())
    scaling = float(DSfloat(peak / _DOSE_LEVELS, auto_format=True)) if peak > 0 else 1.0
    pixels = np.clip(np.rint(dose.astype(np.float64) / scaling), 0, 2**32 - 1).astype("<u4")
    _set_monochrome_pixels(ds, pixels, bits=32, signed=False)
    ds.DoseUnits = "GY"
    ds.DoseType = grid.dose_type
    ds.DoseSummationType = grid.summation_type
    ds.DoseGridScaling = _ds_value(scaling)
    if content_description:
        ds.DoseComment = content_description
    ds.ReferencedRTPlanSequence = [_reference(referenced_plan_sop_class, referenced_plan_uid)]
    return ds


# Concepts of TID 1500 numeric measurements as OHIF/dcmjs write them (SNOMED CT), and their UCUM units.
SR_CONCEPTS = {"Length": ("410668003", "SCT"), "Area": ("42798000", "SCT"), "Volume": ("118565006", "SCT"),
               "Angle": ("1483009", "SCT"), "Mean": ("373098007", "SCT")}
_UCUM_MEANINGS = {"mm": "millimeter", "mm2": "square millimeter", "mm3": "cubic millimeter", "deg": "degree",
                  "[hnsf'U]": "Hounsfield unit"}


def build_measurement_report(study: PatientStudy, measurements: Sequence[SrMeasurement], *,
                             sop_instance_uid: str, series_instance_uid: str, observer: str = "OHIF^USER",
                             series_description: str = "Measurement report", series_number: int = 50,
                             created: datetime | None = None) -> Dataset:
    """A Comprehensive SR "Imaging Measurement Report" (TID 1500) as OHIF's "create report" stores it.

    One Measurement Group (TID 1501) per measurement: tracking identifier
    and UID, an optional finding, and one NUM item whose SCOORD (INFERRED
    FROM) selects the image it was drawn on.
    """
    _check_study(study)
    _check_uid(sop_instance_uid, "sop_instance_uid")
    _check_uid(series_instance_uid, "series_instance_uid")
    if not measurements:
        raise DicomInputError("measurement report: no measurements")
    when = created or datetime.now()
    ds = _new_dataset(sop.COMPREHENSIVE_SR, sop_instance_uid, "SR", study, series_instance_uid=series_instance_uid,
                      series_number=series_number, series_description=series_description, created=when,
                      frame_of_reference=False)
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = _date(when), _time(when)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("126000", "DCM", "Imaging Measurement Report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentTemplateSequence = [_item(MappingResource="DCMR", TemplateIdentifier="1500")]
    ds.CompletionFlag, ds.VerificationFlag = "PARTIAL", "UNVERIFIED"
    groups = []
    for index, m in enumerate(measurements, start=1):
        if m.unit not in _UCUM_MEANINGS:
            raise DicomInputError(f"measurement {index}: unit {m.unit!r} is not one of {sorted(_UCUM_MEANINGS)}")
        _check_uid(m.referenced_sop_instance_uid, f"measurement {index} referenced_sop_instance_uid")
        code, scheme = SR_CONCEPTS.get(m.concept, (f"ORT{index}", "99ORTHANCRT"))
        image = _item(RelationshipType="SELECTED FROM", ValueType="IMAGE", ReferencedSOPSequence=[_item(
            ReferencedSOPClassUID=m.referenced_sop_class_uid, ReferencedSOPInstanceUID=m.referenced_sop_instance_uid,
            **({"ReferencedFrameNumber": m.frame_number} if m.frame_number else {}))])
        scoord = _item(RelationshipType="INFERRED FROM", ValueType="SCOORD", GraphicType=m.graphic_type,
                       GraphicData=[float(v) for v in m.graphic_data], ContentSequence=[image])
        num = _item(RelationshipType="CONTAINS", ValueType="NUM", ConceptNameCodeSequence=[_code(code, scheme, m.concept)],
                    MeasuredValueSequence=[_item(NumericValue=_ds_value(m.value), MeasurementUnitsCodeSequence=[
                        _code(m.unit, "UCUM", _UCUM_MEANINGS[m.unit])])],
                    ContentSequence=[scoord])
        content = [
            _item(RelationshipType="HAS OBS CONTEXT", ValueType="TEXT",
                  ConceptNameCodeSequence=[_code("112039", "DCM", "Tracking Identifier")],
                  TextValue=m.tracking_identifier or f"Orthanc-RT:{m.concept}"),
            _item(RelationshipType="HAS OBS CONTEXT", ValueType="UIDREF",
                  ConceptNameCodeSequence=[_code("112040", "DCM", "Tracking Unique Identifier")],
                  UID=m.tracking_uid or derive_uid(sop_instance_uid, "tracking", str(index))),
        ]
        if m.finding:
            content.append(_item(RelationshipType="CONTAINS", ValueType="CODE",
                                 ConceptNameCodeSequence=[_code("121071", "DCM", "Finding")],
                                 ConceptCodeSequence=[_code("ORT-FINDING", "99ORTHANCRT", m.finding[:64])]))
        content.append(num)
        groups.append(_item(RelationshipType="CONTAINS", ValueType="CONTAINER", ContinuityOfContent="SEPARATE",
                            ConceptNameCodeSequence=[_code("125007", "DCM", "Measurement Group")],
                            ContentTemplateSequence=[_item(MappingResource="DCMR", TemplateIdentifier="1501")],
                            ContentSequence=content))
    ds.ContentSequence = [
        _item(RelationshipType="HAS CONCEPT MOD", ValueType="CODE",
              ConceptNameCodeSequence=[_code("121049", "DCM", "Language of Content Item and Descendants")],
              ConceptCodeSequence=[_code("eng", "RFC5646", "English")]),
        _item(RelationshipType="HAS OBS CONTEXT", ValueType="PNAME",
              ConceptNameCodeSequence=[_code("121008", "DCM", "Person Observer Name")], PersonName=observer),
        _item(RelationshipType="CONTAINS", ValueType="CONTAINER", ContinuityOfContent="SEPARATE",
              ConceptNameCodeSequence=[_code("126010", "DCM", "Imaging Measurements")], ContentSequence=groups),
    ]
    by_series: dict[str, list[SrMeasurement]] = {}
    for m in measurements:
        by_series.setdefault(m.referenced_series_instance_uid, []).append(m)
    ds.CurrentRequestedProcedureEvidenceSequence = [_item(
        StudyInstanceUID=study.study_instance_uid,
        ReferencedSeriesSequence=[_item(SeriesInstanceUID=series, ReferencedSOPSequence=[
            _reference(m.referenced_sop_class_uid, m.referenced_sop_instance_uid) for m in items])
            for series, items in by_series.items()])]
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


# --- shared modules ---------------------------------------------------------------------------------------

def _new_dataset(sop_class: str, sop_instance_uid: str, modality: str, study: PatientStudy, *,
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
    ds.InstanceCreationDate, ds.InstanceCreationTime = _date(created), _time(created)
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
    ds.SeriesDate, ds.SeriesTime = _date(created), _time(created)
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MANUFACTURER
    ds.SoftwareVersions = orthanc_rt.__version__
    if frame_of_reference:
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
    return ds


def _set_monochrome_pixels(ds: Dataset, pixels: np.ndarray, *, bits: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _reference(sop_class: str, sop_instance: str) -> Dataset:
    return _item(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_instance)


def _ds_value(value: float) -> DSfloat:
    # DS holds at most 16 characters; auto_format keeps as many digits as fit.
    return DSfloat(float(value), auto_format=True)


def _ds_values(values: Iterable[float]) -> list[DSfloat]:
    return [_ds_value(v) for v in values]


def _date(when: datetime) -> str:
    return when.strftime("%Y%m%d")


def _time(when: datetime) -> str:
    return when.strftime("%H%M%S")


# --- checks -----------------------------------------------------------------------------------------------

def _check_uid(value: str, what: str) -> None:
    if not is_valid_uid(value):
        raise DicomInputError(f"{what} {value!r} is not a valid DICOM UID (digits and dots, at most 64 characters)")


def _check_text(value: str, what: str, limit: int) -> None:
    if not isinstance(value, str) or len(value) > limit or "\\" in value:
        raise DicomInputError(f"{what} must be text of at most {limit} characters without backslashes, "
                              f"not {value!r}")


def _check_study(study: PatientStudy) -> None:
    _check_uid(study.study_instance_uid, "study_instance_uid")
    _check_uid(study.frame_of_reference_uid, "frame_of_reference_uid")
    _check_text(study.patient_id, "patient_id", 64)
    _check_text(study.study_id, "study_id", 16)
    _check_text(study.study_description, "study_description", 64)


def _check_same_frame(frame_of_reference_uid: str, study: PatientStudy, what: str) -> None:
    if frame_of_reference_uid and frame_of_reference_uid != study.frame_of_reference_uid:
        raise DicomInputError(f"{what} is in FrameOfReferenceUID {frame_of_reference_uid}, the study "
                              f"{study.frame_of_reference_uid}")


def _check_grid(values: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
                frame_of_reference_uid: str, study: PatientStudy, what: str) -> None:
    """A volume the image-like builders can write: 3-D, finite, on a valid grid in the study's frame."""
    if values.ndim != 3 or values.size == 0:
        raise DicomInputError(f"{what}: expected a non-empty [z, y, x] volume, got shape {values.shape}")
    if len(origin_mm) != 3 or not np.all(np.isfinite(origin_mm)):
        raise DicomInputError(f"{what}: origin {tuple(origin_mm)} must be three finite numbers (mm)")
    if len(spacing_mm) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing_mm):
        raise DicomInputError(f"{what}: spacing {tuple(spacing_mm)} must be three positive numbers (mm)")
    _check_same_frame(frame_of_reference_uid, study, what)
    if not np.all(np.isfinite(values)):
        raise DicomInputError(f"{what}: values must be finite (NaN or infinity found)")


def _check_rois(rois: Sequence[RoiSpec], shape_zyx: tuple[int, int, int]) -> None:
    if not rois:
        raise DicomInputError("RTSTRUCT: no ROIs given")
    names = [roi.name for roi in rois]
    if len(set(names)) != len(names):
        raise DicomInputError(f"RTSTRUCT: ROI names repeat: {names}")
    for roi in rois:
        _check_text(roi.name, "ROI name", 64)
        if not roi.name.strip():
            raise DicomInputError("RTSTRUCT: an ROI has an empty name")
        if roi.type not in ROI_TYPES:
            raise DicomInputError(f"ROI {roi.name!r}: type {roi.type!r} is not an RTROIInterpretedType "
                                  f"({', '.join(ROI_TYPES)})")
        mask = np.asarray(roi.mask)
        if mask.shape != tuple(shape_zyx):
            raise DicomInputError(f"ROI {roi.name!r}: mask shape {mask.shape} is not the CT's {tuple(shape_zyx)}")
        if mask.dtype != bool:
            raise DicomInputError(f"ROI {roi.name!r}: mask must be boolean, not {mask.dtype}")
        if not mask.any():
            raise DicomInputError(f"ROI {roi.name!r}: mask is empty")
        if roi.color is not None and (len(roi.color) != 3 or not all(0 <= int(c) <= 255 for c in roi.color)):
            raise DicomInputError(f"ROI {roi.name!r}: color {roi.color!r} must be three integers 0-255")


def _check_beams(beams: Sequence[IonBeam]) -> None:
    if not beams:
        raise DicomInputError("ion plan: no beams")
    if len(beams) > MAX_BEAMS:
        raise DicomInputError(f"ion plan: {len(beams)} beams; at most {MAX_BEAMS}")
    numbers = [beam.number for beam in beams]
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        raise DicomInputError(f"ion plan: beam numbers must be distinct and positive, not {numbers}")
    for beam in beams:
        where = f"beam {beam.number}"
        if beam.radiation_type != "PROTON":
            raise DicomInputError(f"{where}: radiation_type {beam.radiation_type!r}; only PROTON is written")
        if beam.scan_mode not in MODULATED_SCAN_MODES:
            raise DicomInputError(f"{where}: scan_mode {beam.scan_mode!r}; only pencil-beam scanning "
                                  f"({', '.join(MODULATED_SCAN_MODES)}) is written")
        if len(beam.isocenter_mm) != 3 or not np.all(np.isfinite(beam.isocenter_mm)):
            raise DicomInputError(f"{where}: isocenter_mm {beam.isocenter_mm!r} must be three finite numbers")
        if not beam.layers:
            raise DicomInputError(f"{where}: no energy layers")
        if any(layer.range_shifter_in for layer in beam.layers) and not beam.range_shifters:
            raise DicomInputError(f"{where}: a layer has its range shifter in but the beam has no range shifter")
        for index, layer in enumerate(beam.layers, start=1):
            _check_layer(layer, f"{where} layer {index}")
        total = sum(layer.mu for layer in beam.layers)
        if total <= 0:
            raise DicomInputError(f"{where}: no spot has positive MU")
        if not np.isclose(beam.meterset_mu, total, rtol=1e-6, atol=0):
            raise DicomInputError(f"{where}: meterset_mu {beam.meterset_mu:g} is not the sum of its spots' MU "
                                  f"({total:g})")


def _check_layer(layer: EnergyLayer, where: str) -> None:
    if not 0 < layer.nominal_energy_mev <= MAX_ENERGY_MEV:
        raise DicomInputError(f"{where}: energy {layer.nominal_energy_mev:g} MeV is outside (0, {MAX_ENERGY_MEV:g}]")
    x, y, mu = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (layer.spot_x_mm, layer.spot_y_mm,
                                                                            layer.spot_mu))
    if not x.size == y.size == mu.size or x.size == 0:
        raise DicomInputError(f"{where}: {x.size} spot x, {y.size} spot y and {mu.size} MU values "
                              "(expected as many of each, at least one)")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(mu))):
        raise DicomInputError(f"{where}: spot positions and MU must be finite")
    if np.any(mu < 0):
        raise DicomInputError(f"{where}: negative spot MU ({mu.min():g})")
    if layer.number_of_paintings < 1:
        raise DicomInputError(f"{where}: number_of_paintings must be at least 1")
    _check_text(layer.spot_tune_id, f"{where} spot_tune_id", 16)


# --- RTSTRUCT pieces --------------------------------------------------------------------------------------

def _colour(roi: RoiSpec, number: int) -> tuple[int, int, int]:
    if roi.color is not None:
        return tuple(int(c) for c in roi.color)  # type: ignore[return-value]
    return _ROI_COLOURS[(number - 1) % len(_ROI_COLOURS)]


def _contours(mask: np.ndarray, origin_mm: Sequence[float], spacing_mm: Sequence[float],
              slice_uids: Sequence[str]) -> list[Dataset]:
    (ox, oy, oz), (sx, sy, sz) = origin_mm, spacing_mm
    contours = []
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        for polygon in slice_polygons(mask[z]):
            rows, columns = polygon[:, 0], polygon[:, 1]
            points = np.column_stack([ox + columns * sx, oy + rows * sy, np.full(len(polygon), oz + z * sz)])
            contours.append(_item(
                ContourImageSequence=[_reference(sop.CT_IMAGE, slice_uids[z])],
                ContourGeometricType="CLOSED_PLANAR",
                NumberOfContourPoints=len(polygon),
                ContourNumber=len(contours) + 1,
                ContourData=_ds_values(points.ravel()),
            ))
    return contours


# --- RT Ion Plan pieces -----------------------------------------------------------------------------------

def _ion_beam(beam: IonBeam, machine: str) -> Dataset:
    item = _item(
        BeamNumber=beam.number, BeamName=(beam.name or f"B{beam.number}")[:64], BeamType=beam.beam_type,
        RadiationType="PROTON", TreatmentMachineName=machine, PrimaryDosimeterUnit="MU",
        TreatmentDeliveryType="TREATMENT", NumberOfWedges=0, NumberOfCompensators=0, NumberOfBoli=0,
        NumberOfBlocks=0, NumberOfRangeShifters=len(beam.range_shifters), NumberOfLateralSpreadingDevices=0,
        NumberOfRangeModulators=0, PatientSupportType="TABLE", ScanMode=beam.scan_mode,
        VirtualSourceAxisDistances=list(_VIRTUAL_SOURCE_AXIS_DISTANCES_MM), ReferencedPatientSetupNumber=1,
    )
    if beam.range_shifters:
        item.RangeShifterSequence = [
            _item(RangeShifterNumber=shifter.number, RangeShifterID=shifter.identifier,
                  RangeShifterType=shifter.type)
            for shifter in beam.range_shifters]
    control_points = []
    cumulative = 0.0
    for layer in beam.layers:
        weights = np.atleast_1d(np.asarray(layer.spot_mu, dtype=np.float32))
        delivering = _control_point(beam, layer, len(control_points), cumulative, weights)
        if beam.range_shifters:  # stated where each layer starts; the closing control point inherits it
            delivering.RangeShifterSettingsSequence = [_range_shifter_setting(shifter, layer.range_shifter_in)
                                                       for shifter in beam.range_shifters]
        cumulative += float(np.sum(weights, dtype=np.float64))
        closing = _control_point(beam, layer, len(control_points) + 1, cumulative, np.zeros_like(weights))
        control_points += [delivering, closing]
    item.FinalCumulativeMetersetWeight = _ds_value(cumulative)
    item.NumberOfControlPoints = len(control_points)
    item.IonControlPointSequence = DicomSequence(control_points)
    return item


def _control_point(beam: IonBeam, layer: EnergyLayer, index: int, cumulative: float,
                   weights: np.ndarray) -> Dataset:
    cp = _item(ControlPointIndex=index, CumulativeMetersetWeight=_ds_value(cumulative),
               NominalBeamEnergy=_ds_value(layer.nominal_energy_mev))
    if index == 0:
        _set_beam_geometry(cp, beam)
    cp.ScanSpotTuneID = layer.spot_tune_id or _DEFAULT_TUNE_ID
    cp.NumberOfScanSpotPositions = int(weights.size)
    x = np.atleast_1d(np.asarray(layer.spot_x_mm, dtype=np.float32))
    y = np.atleast_1d(np.asarray(layer.spot_y_mm, dtype=np.float32))
    cp.ScanSpotPositionMap = [float(v) for v in np.column_stack([x, y]).ravel()]
    # A single value is written as a number, as planning systems do (VM 1 is not a list in DICOM).
    cp.ScanSpotMetersetWeights = float(weights[0]) if weights.size == 1 else [float(w) for w in weights]
    cp.NumberOfPaintings = int(layer.number_of_paintings)
    return cp


def _set_beam_geometry(cp: Dataset, beam: IonBeam) -> None:
    """What the first control point fixes for the whole (static) beam."""
    cp.GantryAngle = _ds_value(beam.gantry_angle_deg)
    cp.GantryRotationDirection = "NONE"
    cp.BeamLimitingDeviceAngle = 0
    cp.BeamLimitingDeviceRotationDirection = "NONE"
    cp.PatientSupportAngle = _ds_value(beam.couch_angle_deg)
    cp.PatientSupportRotationDirection = "NONE"
    cp.TableTopVerticalPosition = None
    cp.TableTopLongitudinalPosition = None
    cp.TableTopLateralPosition = None
    cp.TableTopPitchAngle = 0.0
    cp.TableTopPitchRotationDirection = "NONE"
    cp.TableTopRollAngle = 0.0
    cp.TableTopRollRotationDirection = "NONE"
    cp.IsocenterPosition = _ds_values(beam.isocenter_mm)
    cp.SnoutPosition = None if beam.snout_position_mm is None else float(beam.snout_position_mm)


def _range_shifter_setting(shifter: RangeShifter, inserted: bool) -> Dataset:
    setting = _item(ReferencedRangeShifterNumber=shifter.number, RangeShifterSetting="IN" if inserted else "OUT")
    if shifter.isocenter_to_range_shifter_distance_mm is not None:
        setting.IsocenterToRangeShifterDistance = float(shifter.isocenter_to_range_shifter_distance_mm)
    if shifter.water_equivalent_thickness_mm is not None:
        setting.RangeShifterWaterEquivalentThickness = float(shifter.water_equivalent_thickness_mm)
    return setting


# --- RT Plan (photon) -------------------------------------------------------------------------------------

_PHOTON_SAD_MM = 1000.0  # the CCC engine's source-axis distance
_MAX_NOMINAL_ENERGY_MV = 25.0


def build_photon_plan(study: PatientStudy, beams: Sequence[PhotonBeam], *, sop_instance_uid: str,
                      series_instance_uid: str, label: str, fractions_planned: int,
                      referenced_structure_set_uid: str | None = None, referenced_dose_uid: str | None = None,
                      plan_name: str = "", weight_unit: str = "MU", series_description: str = "Photon plan (Orthanc-RT)",
                      series_number: int = 3, treatment_machine: str = "", created: datetime | None = None) -> Dataset:
    """An RT Plan of static-gantry step-and-shoot IMRT beams (MLCX), one fraction group.

    Each beam's beamlet weights become MLC segments (`orthanc_rt.dicom.leaf_sequencing`:
    leaf pairs one bixel high aligned with the beamlets, jaws around the open
    bixels). Like OpenTPS' photon segments (leaf pairs with their Y edges and
    X tips, jaws, a meterset each), every segment is a pair of control
    points with the same leaf positions, the second `meterset` further in
    CumulativeMetersetWeight; FinalCumulativeMetersetWeight and BeamMeterset
    are the beam's total. Leaf and jaw positions are at the isocentre plane
    (SAD 1000 mm). When `weight_unit` is not "MU" (the CCC engine's weights
    are relative), RTPlanDescription says so: such a plan documents the
    planned fluence but is not deliverable as is.
    """
    _check_plan_header(study, sop_instance_uid, series_instance_uid, label, plan_name, series_description,
                       fractions_planned, referenced_structure_set_uid, referenced_dose_uid)
    sequenced = _check_photon_beams(beams)
    ds = _plan_dataset(sop.RT_PLAN, study, sop_instance_uid, series_instance_uid, label, plan_name,
                       series_description, series_number, fractions_planned, created,
                       [(beam.number, plan.meterset) for beam, plan in zip(beams, sequenced)],
                       referenced_structure_set_uid, referenced_dose_uid)
    if weight_unit != "MU":
        ds.RTPlanDescription = (f"Beamlet weights in {weight_unit}, not calibrated monitor units: "
                                "not deliverable as is")[:1024]
    ds.BeamSequence = [_photon_beam(beam, plan, beam.treatment_machine or treatment_machine)
                       for beam, plan in zip(beams, sequenced)]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _check_plan_header(study: PatientStudy, sop_instance_uid: str, series_instance_uid: str, label: str,
                       plan_name: str, series_description: str, fractions_planned: int,
                       structure_set_uid: str | None, dose_uid: str | None) -> None:
    """What an RT Plan and an RT Ion Plan check alike, before their beams."""
    _check_study(study)
    _check_uid(sop_instance_uid, "sop_instance_uid")
    _check_uid(series_instance_uid, "series_instance_uid")
    if structure_set_uid is not None:
        _check_uid(structure_set_uid, "referenced_structure_set_uid")
    if dose_uid is not None:
        _check_uid(dose_uid, "referenced_dose_uid")
    _check_text(label, "label", 16)
    _check_text(plan_name, "plan_name", 64)
    _check_text(series_description, "series_description", 64)
    if isinstance(fractions_planned, bool) or not isinstance(fractions_planned, (int, np.integer)) \
            or fractions_planned < 1:
        raise DicomInputError(f"fractions_planned must be a whole number of at least 1, not {fractions_planned!r}")


def _plan_dataset(sop_class: str, study: PatientStudy, sop_instance_uid: str, series_instance_uid: str, label: str,
                  plan_name: str, series_description: str, series_number: int, fractions_planned: int,
                  created: datetime | None, beam_metersets: Sequence[tuple[int, float]],
                  structure_set_uid: str | None, dose_uid: str | None) -> Dataset:
    """An RT Plan or RT Ion Plan without its beams: identity, label, references, patient setup, one fraction group
    (`beam_metersets`: (beam number, BeamMeterset) of each beam)."""
    when = created or datetime.now()
    ds = _new_dataset(sop_class, sop_instance_uid, "RTPLAN", study, series_instance_uid=series_instance_uid,
                      series_number=series_number, series_description=series_description, created=when)
    ds.InstanceNumber = 1
    ds.RTPlanLabel = label
    ds.RTPlanName = plan_name or label
    ds.RTPlanDate, ds.RTPlanTime = _date(when), _time(when)
    _set_plan_references(ds, structure_set_uid, dose_uid)
    ds.PatientSetupSequence = [_item(PatientSetupNumber=1, PatientPosition=PATIENT_POSITION,
                                     SetupTechnique="ISOCENTRIC")]
    ds.FractionGroupSequence = [_item(
        FractionGroupNumber=1, NumberOfFractionsPlanned=int(fractions_planned), NumberOfBeams=len(beam_metersets),
        NumberOfBrachyApplicationSetups=0,
        ReferencedBeamSequence=[_item(ReferencedBeamNumber=number, BeamMeterset=_ds_value(meterset))
                                for number, meterset in beam_metersets],
    )]
    return ds


def _set_plan_references(ds: Dataset, structure_set_uid: str | None, dose_uid: str | None) -> None:
    """The structure set the plan was made on (RTPlanGeometry PATIENT, as the standard ties them) and its dose."""
    if structure_set_uid:
        ds.RTPlanGeometry = "PATIENT"
        ds.ReferencedStructureSetSequence = [_reference(sop.RT_STRUCTURE_SET, structure_set_uid)]
    else:
        ds.RTPlanGeometry = "TREATMENT_DEVICE"
    if dose_uid:
        ds.ReferencedDoseSequence = [_reference(sop.RT_DOSE, dose_uid)]


def _check_photon_beams(beams: Sequence[PhotonBeam]) -> list[SequencedBeam]:
    if not beams:
        raise DicomInputError("photon plan: no beams")
    if len(beams) > MAX_BEAMS:
        raise DicomInputError(f"photon plan: {len(beams)} beams; at most {MAX_BEAMS}")
    numbers = [beam.number for beam in beams]
    if len(set(numbers)) != len(numbers) or any(n < 1 for n in numbers):
        raise DicomInputError(f"photon plan: beam numbers must be distinct and positive, not {numbers}")
    sequenced = []
    for beam in beams:
        where = f"beam {beam.number}"
        if len(beam.isocenter_mm) != 3 or not np.all(np.isfinite(beam.isocenter_mm)):
            raise DicomInputError(f"{where}: isocenter_mm {beam.isocenter_mm!r} must be three finite numbers")
        for name in ("gantry_angle_deg", "couch_angle_deg"):
            if not np.isfinite(getattr(beam, name)):
                raise DicomInputError(f"{where}: {name} must be finite")
        if not 0 < beam.nominal_energy_mv <= _MAX_NOMINAL_ENERGY_MV:
            raise DicomInputError(f"{where}: nominal energy {beam.nominal_energy_mv:g} MV is outside "
                                  f"(0, {_MAX_NOMINAL_ENERGY_MV:g}]")
        _check_text(beam.name, f"{where} name", 64)
        try:
            sequenced.append(sequence(beam.beamlet_x_mm, beam.beamlet_y_mm, beam.beamlet_weight,
                                      beam.beamlet_size_mm))
        except SequencingError as exc:
            raise DicomInputError(f"{where}: {exc}") from None
    return sequenced


def _photon_beam(beam: PhotonBeam, plan: SequencedBeam, machine: str) -> Dataset:
    pairs = len(plan.leaf_boundaries_mm) - 1
    item = _item(
        BeamNumber=beam.number, BeamName=(beam.name or f"B{beam.number}")[:64], BeamType="DYNAMIC",
        RadiationType="PHOTON", TreatmentMachineName=machine, PrimaryDosimeterUnit="MU",
        SourceAxisDistance=_ds_value(_PHOTON_SAD_MM),
        BeamLimitingDeviceSequence=[
            _item(RTBeamLimitingDeviceType="ASYMX", NumberOfLeafJawPairs=1),
            _item(RTBeamLimitingDeviceType="ASYMY", NumberOfLeafJawPairs=1),
            _item(RTBeamLimitingDeviceType="MLCX", NumberOfLeafJawPairs=pairs,
                  LeafPositionBoundaries=_ds_values(plan.leaf_boundaries_mm)),
        ],
        TreatmentDeliveryType="TREATMENT", NumberOfWedges=0, NumberOfCompensators=0, NumberOfBoli=0,
        NumberOfBlocks=0, ReferencedPatientSetupNumber=1,
    )
    control_points = []
    cumulative = 0.0
    for segment in plan.segments:
        # Leaf positions: bank A (the -X leaves, one per pair) then bank B.
        leaves = _ds_values(np.concatenate([segment.left_mm, segment.right_mm]))
        for weight in (cumulative, cumulative + segment.meterset):
            cp = _item(ControlPointIndex=len(control_points), CumulativeMetersetWeight=_ds_value(weight))
            positions = [_item(RTBeamLimitingDeviceType="MLCX", LeafJawPositions=leaves)]
            if not control_points:
                cp.NominalBeamEnergy = _ds_value(beam.nominal_energy_mv)
                positions = [_item(RTBeamLimitingDeviceType="ASYMX", LeafJawPositions=_ds_values(plan.jaw_x_mm)),
                             _item(RTBeamLimitingDeviceType="ASYMY", LeafJawPositions=_ds_values(plan.jaw_y_mm)),
                             *positions]
                cp.GantryAngle = _ds_value(beam.gantry_angle_deg % 360.0)
                cp.GantryRotationDirection = "NONE"
                cp.BeamLimitingDeviceAngle = 0
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = _ds_value(beam.couch_angle_deg % 360.0)
                cp.PatientSupportRotationDirection = "NONE"
                cp.TableTopEccentricAngle = 0
                cp.TableTopEccentricRotationDirection = "NONE"
                cp.IsocenterPosition = _ds_values(beam.isocenter_mm)
            cp.BeamLimitingDevicePositionSequence = positions
            control_points.append(cp)
        cumulative += segment.meterset
    item.FinalCumulativeMetersetWeight = _ds_value(cumulative)
    item.NumberOfControlPoints = len(control_points)
    item.ControlPointSequence = DicomSequence(control_points)
    return item
