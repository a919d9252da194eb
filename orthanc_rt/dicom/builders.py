"""The one place Orthanc-RT builds DICOM objects.

Each builder checks its inputs first and raises DicomInputError naming the
argument, then returns a pydicom Dataset with file meta (Explicit VR Little
Endian) carrying the modules Orthanc and viewers need.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.errors import DicomInputError
from orthanc_rt.dicom.models import CtVolume, DoseGrid, IonBeam, PatientStudy
from orthanc_rt.uids import derive_uid

MANUFACTURER = "Orthanc-RT"
_UINT32_MAX = 2**32 - 1


@dataclass
class RoiSpec:
    """A region of interest given as a mask on the CT grid ([z, y, x] booleans)."""

    name: str
    mask: np.ndarray
    type: str = "ORGAN"  # RTROIInterpretedType: PTV, CTV, GTV, ORGAN, EXTERNAL...
    color: tuple[int, int, int] = (255, 0, 0)


def build_ct_series(volume: CtVolume, study: PatientStudy, *, series_instance_uid: str,
                    series_description: str = "CT", series_number: int = 1) -> list[Dataset]:
    """One CT Image per z slice; SOPInstanceUIDs derived from the series UID."""
    if volume.hu.ndim != 3 or min(volume.hu.shape) < 1:
        raise DicomInputError(f"build_ct_series: volume.hu must be a non-empty 3-D array, got shape {volume.hu.shape}")
    _check_spacing("build_ct_series", volume.spacing_mm)
    if volume.frame_of_reference_uid != study.frame_of_reference_uid:
        raise DicomInputError("build_ct_series: volume and study have different FrameOfReferenceUIDs")
    stored = np.clip(np.rint(volume.hu), -32768, 32767).astype(np.int16)
    sx, sy, sz = volume.spacing_mm
    ox, oy, oz = volume.origin_mm
    slices = []
    for k in range(stored.shape[0]):
        ds = _base(sop.CT_IMAGE, derive_uid(series_instance_uid, "ct-slice", str(k)), study,
                   series_instance_uid=series_instance_uid, modality="CT", series_number=series_number,
                   series_description=series_description)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ox, oy, oz + k * sz]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = oz + k * sz
        ds.SliceThickness = sz
        ds.PixelSpacing = [sy, sx]  # row spacing, column spacing
        ds.PatientPosition = "HFS"
        ds.KVP = 120
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        _pixels(ds, stored[k], bits=16, signed=True)
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        slices.append(ds)
    return slices


def build_rtstruct(ct: Sequence[Dataset], study: PatientStudy, rois: Sequence[RoiSpec], *,
                   series_instance_uid: str, sop_instance_uid: str, label: str = "RTSTRUCT") -> Dataset:
    """A structure set whose contours trace each ROI mask slice by slice (CLOSED_PLANAR)."""
    from skimage import measure

    if not ct:
        raise DicomInputError("build_rtstruct: no CT slices to reference")
    if not rois:
        raise DicomInputError("build_rtstruct: no ROI given")
    ordered = sorted(ct, key=lambda d: float(d.ImagePositionPatient[2]))
    shape = (len(ordered), int(ordered[0].Rows), int(ordered[0].Columns))
    names = [r.name for r in rois]
    if len(set(names)) != len(names):
        raise DicomInputError(f"build_rtstruct: ROI names must be unique, got {names}")
    for roi in rois:
        if roi.mask.shape != shape:
            raise DicomInputError(f"build_rtstruct: ROI {roi.name!r} mask has shape {roi.mask.shape}, CT is {shape}")
        if not roi.mask.any():
            raise DicomInputError(f"build_rtstruct: ROI {roi.name!r} mask is empty")
    ds = _base(sop.RT_STRUCTURE_SET, sop_instance_uid, study, series_instance_uid=series_instance_uid,
               modality="RTSTRUCT", series_number=2, series_description=label)
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate, ds.StructureSetTime = _now()
    ct_series = DicomSequence([_item(SeriesInstanceUID=ordered[0].SeriesInstanceUID, ContourImageSequence=DicomSequence(
        [_item(ReferencedSOPClassUID=d.SOPClassUID, ReferencedSOPInstanceUID=d.SOPInstanceUID) for d in ordered]))])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_item(
        FrameOfReferenceUID=study.frame_of_reference_uid,
        RTReferencedStudySequence=DicomSequence([_item(
            ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",  # Detached Study Management (as TPSs write it)
            ReferencedSOPInstanceUID=study.study_instance_uid,
            RTReferencedSeriesSequence=ct_series)]))])
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    ds.RTROIObservationsSequence = DicomSequence()
    row_spacing, col_spacing = (float(v) for v in ordered[0].PixelSpacing)
    x0, y0 = float(ordered[0].ImagePositionPatient[0]), float(ordered[0].ImagePositionPatient[1])
    for number, roi in enumerate(rois, start=1):
        ds.StructureSetROISequence.append(_item(
            ROINumber=number, ReferencedFrameOfReferenceUID=study.frame_of_reference_uid, ROIName=roi.name,
            ROIGenerationAlgorithm="MANUAL"))
        contours = DicomSequence()
        for k, image in enumerate(ordered):
            plane = roi.mask[k]
            if not plane.any():
                continue
            z = float(image.ImagePositionPatient[2])
            # Pad so contours close around masks touching the border; level 0.5 traces voxel centres' boundary.
            for path in measure.find_contours(np.pad(plane.astype(float), 1), 0.5):
                rows, cols = path[:-1, 0] - 1, path[:-1, 1] - 1  # last point repeats the first
                if len(rows) < 3:
                    continue
                points = np.column_stack([x0 + cols * col_spacing, y0 + rows * row_spacing, np.full(len(rows), z)])
                contours.append(_item(
                    ContourImageSequence=DicomSequence([_item(ReferencedSOPClassUID=image.SOPClassUID,
                                                              ReferencedSOPInstanceUID=image.SOPInstanceUID)]),
                    ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(points),
                    ContourData=[round(float(v), 3) for v in points.ravel()]))
        ds.ROIContourSequence.append(_item(ReferencedROINumber=number, ROIDisplayColor=list(roi.color),
                                           ContourSequence=contours))
        ds.RTROIObservationsSequence.append(_item(ObservationNumber=number, ReferencedROINumber=number,
                                                  RTROIInterpretedType=roi.type, ROIInterpreter=""))
    return ds


def build_ion_plan(study: PatientStudy, beams: Sequence[IonBeam], *, sop_instance_uid: str,
                   series_instance_uid: str, label: str, fractions_planned: int,
                   referenced_structure_set_uid: str | None = None, patient_position: str = "HFS") -> Dataset:
    """An RT Ion Plan written as commercial systems write it: a pair of control points per layer."""
    if not beams:
        raise DicomInputError("build_ion_plan: no beam given")
    if fractions_planned < 1:
        raise DicomInputError(f"build_ion_plan: fractions_planned must be ≥ 1, got {fractions_planned}")
    for beam in beams:
        total = sum(layer.mu for layer in beam.layers)
        if not beam.layers or total <= 0:
            raise DicomInputError(f"build_ion_plan: beam {beam.number} has no spot with MU > 0")
        if abs(total - beam.meterset_mu) > 1e-6 * max(1.0, total):
            raise DicomInputError(f"build_ion_plan: beam {beam.number} meterset_mu {beam.meterset_mu} differs from "
                                  f"the sum of its spot MU {total}")
        for layer in beam.layers:
            if np.any(layer.spot_mu < 0):
                raise DicomInputError(f"build_ion_plan: beam {beam.number}, {layer.nominal_energy_mev} MeV: negative MU")
    ds = _base(sop.RT_ION_PLAN, sop_instance_uid, study, series_instance_uid=series_instance_uid, modality="RTPLAN",
               series_number=3, series_description=label)
    ds.RTPlanLabel = label[:16]
    ds.RTPlanName = label[:64]
    ds.RTPlanDate, ds.RTPlanTime = _now()
    ds.RTPlanGeometry = "PATIENT"
    ds.ApprovalStatus = "UNAPPROVED"
    ds.PatientSetupSequence = DicomSequence([_item(PatientSetupNumber=1, PatientPosition=patient_position)])
    if referenced_structure_set_uid:
        ds.ReferencedStructureSetSequence = DicomSequence([_item(
            ReferencedSOPClassUID=sop.RT_STRUCTURE_SET, ReferencedSOPInstanceUID=referenced_structure_set_uid)])
    ds.FractionGroupSequence = DicomSequence([_item(
        FractionGroupNumber=1, NumberOfFractionsPlanned=fractions_planned, NumberOfBeams=len(beams),
        NumberOfBrachyApplicationSetups=0,
        ReferencedBeamSequence=DicomSequence([_item(ReferencedBeamNumber=b.number, BeamMeterset=b.meterset_mu)
                                              for b in beams]))])
    ds.IonBeamSequence = DicomSequence([_ion_beam(b) for b in beams])
    return ds


def build_rtdose(grid: DoseGrid, study: PatientStudy, *, sop_instance_uid: str, series_instance_uid: str,
                 referenced_plan_uid: str, series_description: str,
                 referenced_plan_sop_class: str = sop.RT_ION_PLAN) -> Dataset:
    """A whole-plan physical dose (DoseSummationType PLAN, Gy).

    Pixels are 32-bit unsigned with DoseGridScaling = max dose / (2^32 − 1):
    a relative resolution of 2e-10, far below Monte Carlo noise.
    """
    dose = np.asarray(grid.dose_gy, dtype=np.float64)
    if dose.ndim != 3 or dose.size == 0:
        raise DicomInputError(f"build_rtdose: dose must be a non-empty 3-D array, got shape {dose.shape}")
    if not np.all(np.isfinite(dose)):
        raise DicomInputError("build_rtdose: dose holds NaN or infinite values")
    if dose.min() < 0:
        raise DicomInputError(f"build_rtdose: dose holds negative values (min {dose.min():.3g} Gy)")
    _check_spacing("build_rtdose", grid.spacing_mm)
    if grid.frame_of_reference_uid != study.frame_of_reference_uid:
        raise DicomInputError("build_rtdose: dose grid and study have different FrameOfReferenceUIDs")
    ds = _base(sop.RT_DOSE, sop_instance_uid, study, series_instance_uid=series_instance_uid, modality="RTDOSE",
               series_number=4, series_description=series_description)
    peak = float(dose.max())
    scaling = peak / _UINT32_MAX if peak > 0 else 1.0
    sx, sy, sz = grid.spacing_mm
    frames = dose.shape[0]
    ds.ImagePositionPatient = list(grid.origin_mm)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [sy, sx]
    ds.SliceThickness = sz
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = (0x3004, 0x000C)  # GridFrameOffsetVector
    ds.GridFrameOffsetVector = [round(k * sz, 6) for k in range(frames)]
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseGridScaling = f"{scaling:.9e}"  # a DS holds 16 characters; pixels use the value as written
    stored = np.rint(dose / float(ds.DoseGridScaling)).clip(0, _UINT32_MAX).astype(np.uint32)
    ds.ReferencedRTPlanSequence = DicomSequence([_item(ReferencedSOPClassUID=referenced_plan_sop_class,
                                                       ReferencedSOPInstanceUID=referenced_plan_uid)])
    _pixels(ds, stored, bits=32, signed=False)
    return ds


# -- helpers ---------------------------------------------------------------
def _ion_beam(beam: IonBeam) -> Dataset:
    total = sum(layer.mu for layer in beam.layers)
    item = _item(
        BeamNumber=beam.number, BeamName=beam.name or f"Beam {beam.number}", BeamType=beam.beam_type,
        RadiationType=beam.radiation_type, ScanMode=beam.scan_mode, TreatmentDeliveryType="TREATMENT",
        TreatmentMachineName=beam.treatment_machine or "Generic", PrimaryDosimeterUnit="MU",
        NumberOfWedges=0, NumberOfCompensators=0, NumberOfBoli=0, NumberOfBlocks=0,
        NumberOfRangeShifters=len(beam.range_shifters), NumberOfLateralSpreadingDevices=0,
        NumberOfRangeModulators=0, FinalCumulativeMetersetWeight=total,
        NumberOfControlPoints=2 * len(beam.layers),
    )
    if beam.range_shifters:
        item.RangeShifterSequence = DicomSequence([_item(RangeShifterNumber=r.number, RangeShifterID=r.identifier,
                                                         RangeShifterType=r.type) for r in beam.range_shifters])
    cps = DicomSequence()
    cumulative = 0.0
    for i, layer in enumerate(beam.layers):
        first = _item(ControlPointIndex=2 * i, NominalBeamEnergy=layer.nominal_energy_mev,
                      CumulativeMetersetWeight=cumulative, ScanSpotTuneID=layer.spot_tune_id or "1.0",
                      NumberOfScanSpotPositions=len(layer.spot_mu), NumberOfPaintings=layer.number_of_paintings)
        positions = np.column_stack([layer.spot_x_mm, layer.spot_y_mm]).ravel()
        _spots(first, positions, layer.spot_mu)
        if i == 0:
            first.GantryAngle = beam.gantry_angle_deg
            first.GantryRotationDirection = "NONE"
            first.PatientSupportAngle = beam.couch_angle_deg
            first.PatientSupportRotationDirection = "NONE"
            first.IsocenterPosition = list(beam.isocenter_mm)
            if beam.snout_position_mm is not None:
                first.SnoutPosition = beam.snout_position_mm
        if beam.range_shifters:
            first.RangeShifterSettingsSequence = DicomSequence([_range_shifter_setting(r, layer.range_shifter_in)
                                                                for r in beam.range_shifters])
        cumulative += layer.mu
        second = _item(ControlPointIndex=2 * i + 1, NominalBeamEnergy=layer.nominal_energy_mev,
                       CumulativeMetersetWeight=cumulative, ScanSpotTuneID=layer.spot_tune_id or "1.0",
                       NumberOfScanSpotPositions=len(layer.spot_mu), NumberOfPaintings=layer.number_of_paintings)
        _spots(second, positions, np.zeros_like(layer.spot_mu))
        cps.extend([first, second])
    item.IonControlPointSequence = cps
    return item


def _range_shifter_setting(shifter, inserted: bool) -> Dataset:
    setting = _item(ReferencedRangeShifterNumber=shifter.number, RangeShifterSetting="IN" if inserted else "OUT")
    if shifter.water_equivalent_thickness_mm is not None:
        setting.RangeShifterWaterEquivalentThickness = shifter.water_equivalent_thickness_mm
    if shifter.isocenter_to_range_shifter_distance_mm is not None:
        setting.IsocenterToRangeShifterDistance = shifter.isocenter_to_range_shifter_distance_mm
    return setting


def _spots(cp: Dataset, positions: np.ndarray, weights: np.ndarray) -> None:
    # One spot: a number and a pair, as planning systems write it.
    cp.ScanSpotPositionMap = [float(v) for v in positions]
    cp.ScanSpotMetersetWeights = float(weights[0]) if len(weights) == 1 else [float(v) for v in weights]


def _base(sop_class: str, sop_uid: str, study: PatientStudy, *, series_instance_uid: str, modality: str,
          series_number: int, series_description: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    date, time = _now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StudyDate, ds.StudyTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.StationName = "orthanc-rt"
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = series_description[:64]
    ds.OperatorsName = ""
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    return ds


def _pixels(ds: Dataset, array: np.ndarray, *, bits: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(array.shape[-2]), int(array.shape[-1])
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def _item(**attributes) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _check_spacing(where: str, spacing: Sequence[float]) -> None:
    if len(spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise DicomInputError(f"{where}: spacing_mm must be three positive numbers, got {tuple(spacing)}")


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")
