"""The builders: what they write, that the readers get it back, and what they refuse."""
from __future__ import annotations

import copy
from datetime import datetime

import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as PolygonPath

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.ct import build_ct_series
from orthanc_rt.dicom.dose import build_rtdose, read_rtdose
from orthanc_rt.dicom.ion_plan import build_ion_plan, read_ion_plan
from orthanc_rt.dicom.models import CtVolume, DoseGrid, EnergyLayer
from orthanc_rt.dicom.rtstruct import RoiSpec, build_rtstruct
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.errors import DicomInputError
from tests.support import cases as util

STUDY = util.STUDY
FRAME = STUDY.frame_of_reference_uid
WHEN = datetime(2025, 2, 3, 4, 5, 6)


def _volume(shape=(6, 10, 12), origin=(-12.0, -20.0, 5.0), spacing=(2.0, 2.5, 3.0)) -> CtVolume:
    return CtVolume(hu=np.zeros(shape, dtype=np.float32), origin_mm=origin, spacing_mm=spacing,
                    frame_of_reference_uid=FRAME)


def _ct(volume=None):
    return build_ct_series(volume or _volume(), STUDY, series_instance_uid=derive_uid("builders", "ct"), created=WHEN)


def _through_bytes(ds):
    return from_bytes(to_bytes(ds))


def _assert_part10(ds, sop_class):
    raw = to_bytes(ds)
    assert raw[128:132] == b"DICM"
    back = pydicom.dcmread(pydicom.filebase.DicomBytesIO(raw))
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPClassUID == sop_class == back.SOPClassUID
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.StudyInstanceUID == STUDY.study_instance_uid and back.PatientID == STUDY.patient_id
    assert back.Manufacturer == "Orthanc-RT"


# --- CT -------------------------------------------------------------------------------------------------------

def test_ct_slices_carry_geometry_pixels_and_derived_uids():
    volume = _volume()
    volume.hu[:] = np.arange(volume.hu.size, dtype=np.float32).reshape(volume.hu.shape) - 1000
    slices = _ct(volume)
    assert len(slices) == 6
    _assert_part10(slices[0], sop.CT_IMAGE)
    first, last = slices[0], slices[-1]
    assert [float(v) for v in last.ImagePositionPatient] == [-12.0, -20.0, 5.0 + 5 * 3.0]
    assert [float(v) for v in first.PixelSpacing] == [2.5, 2.0]  # row (y) spacing first
    assert (first.Rows, first.Columns) == (10, 12)
    assert first.RescaleIntercept == -1024 and first.PixelRepresentation == 1 and first.BitsAllocated == 16
    assert first.Modality == "CT" and first.PatientPosition == "HFS"
    np.testing.assert_array_equal(last.pixel_array.astype(float) - 1024, volume.hu[-1])
    assert [ds.SOPInstanceUID for ds in slices] == [ds.SOPInstanceUID for ds in _ct(volume)]
    assert len({ds.SOPInstanceUID for ds in slices}) == 6
    other = build_ct_series(volume, STUDY, series_instance_uid=derive_uid("builders", "ct-2"))
    assert not {ds.SOPInstanceUID for ds in slices} & {ds.SOPInstanceUID for ds in other}


@pytest.mark.parametrize("change, message", [
    (lambda v: setattr(v, "hu", np.zeros((4, 5))), r"non-empty \[z, y, x\] volume"),
    (lambda v: setattr(v, "hu", np.zeros((0, 5, 5))), r"non-empty \[z, y, x\] volume"),
    (lambda v: setattr(v, "spacing_mm", (1.0, 0.0, 1.0)), r"spacing .* must be three positive numbers"),
    (lambda v: v.hu.__setitem__((0, 0, 0), np.nan), r"CT volume: values must be finite"),
    (lambda v: v.hu.__setitem__((0, 0, 0), 32000), r"HU range 0..32000 does not fit 16-bit pixels"),
    (lambda v: setattr(v, "frame_of_reference_uid", "1.2.3"), r"FrameOfReferenceUID 1.2.3, the study"),
])
def test_ct_builder_refusals(change, message):
    volume = _volume()
    change(volume)
    with pytest.raises(DicomInputError, match=message):
        _ct(volume)


def test_ct_pixels_reach_the_ends_of_the_16_bit_range():
    volume = _volume()
    volume.hu[0, 0, 0], volume.hu[0, 0, 1] = -33792, 31743
    slices = _ct(volume)
    hu = slices[0].pixel_array.astype(float) + float(slices[0].RescaleIntercept)
    assert (hu[0, 0], hu[0, 1]) == (-33792, 31743)


def test_ct_builder_refuses_a_bad_series_uid():
    with pytest.raises(DicomInputError, match=r"series_instance_uid '1.02' is not a valid DICOM UID"):
        build_ct_series(_volume(), STUDY, series_instance_uid="1.02")


# --- RTSTRUCT -------------------------------------------------------------------------------------------------

def _rtstruct(ct, rois, **kwargs):
    return build_rtstruct(ct, STUDY, rois, series_instance_uid=derive_uid("builders", "ss-series"),
                          sop_instance_uid=derive_uid("builders", "ss"), label="Unit ROIs", created=WHEN, **kwargs)


def _masks():
    shape = (6, 10, 12)
    box = np.zeros(shape, dtype=bool)
    box[1:4, 2:7, 3:9] = True
    ring = np.zeros(shape, dtype=bool)
    ring[2:5, 1:9, 1:11] = True
    ring[2:5, 3:7, 4:8] = False  # a hole
    diagonal = np.zeros(shape, dtype=bool)
    diagonal[5, 0, 0] = diagonal[5, 1, 1] = True  # touching only at a corner
    return {"box": box, "ring": ring, "diagonal": diagonal}


def _fill(ds, roi_number, geometry_shape, origin, spacing):
    """Rasterise an ROI's contours back on the CT grid: voxel centres inside, even-odd rule."""
    nz, ny, nx = geometry_shape
    (ox, oy, oz), (sx, sy, sz) = origin, spacing
    yy, xx = np.meshgrid(oy + sy * np.arange(ny), ox + sx * np.arange(nx), indexing="ij")
    centres = np.column_stack([xx.ravel(), yy.ravel()])
    mask = np.zeros(geometry_shape, dtype=bool)
    contours = next(c for c in ds.ROIContourSequence if c.ReferencedROINumber == roi_number).ContourSequence
    for contour in contours:
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        z = int(round((points[0, 2] - oz) / sz))
        mask[z] ^= PolygonPath(points[:, :2]).contains_points(centres).reshape(ny, nx)
    return mask


def test_rtstruct_contours_give_back_the_masks_voxel_for_voxel():
    volume = _volume()
    ct = _ct(volume)
    masks = _masks()
    ds = _through_bytes(_rtstruct(ct, [RoiSpec("Box", masks["box"], "PTV"), RoiSpec("Ring", masks["ring"], "ORGAN"),
                                       RoiSpec("Corner", masks["diagonal"], "CTV", (1, 2, 3))]))
    _assert_part10(ds, sop.RT_STRUCTURE_SET)
    for number, name in enumerate(("box", "ring", "diagonal"), start=1):
        filled = _fill(ds, number, volume.hu.shape, volume.origin_mm, volume.spacing_mm)
        np.testing.assert_array_equal(filled, masks[name], err_msg=name)
    ring_contours = ds.ROIContourSequence[1].ContourSequence
    assert len(ring_contours) == 2 * 3  # outline and hole on each of three slices
    assert len(ds.ROIContourSequence[2].ContourSequence) == 2  # corner-touching voxels stay apart


def test_rtstruct_references_the_ct_slices_frame_and_series():
    ct = _ct()
    ds = _rtstruct(ct, [RoiSpec("Box", _masks()["box"], "PTV")])
    assert ds.Modality == "RTSTRUCT" and ds.StructureSetLabel == "Unit ROIs"
    assert ds.StructureSetDate == "20250203"
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == FRAME
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == [s.SOPInstanceUID for s in ct]
    for contour in ds.ROIContourSequence[0].ContourSequence:
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        z = float(contour.ContourData[2])
        (image,) = contour.ContourImageSequence
        referenced = next(s for s in ct if s.SOPInstanceUID == image.ReferencedSOPInstanceUID)
        assert float(referenced.ImagePositionPatient[2]) == z
        assert contour.NumberOfContourPoints * 3 == len(contour.ContourData)
    (roi,) = ds.StructureSetROISequence
    assert (roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID) == (1, "Box", FRAME)
    (observation,) = ds.RTROIObservationsSequence
    assert observation.RTROIInterpretedType == "PTV" and observation.ReferencedROINumber == 1
    assert list(ds.ROIContourSequence[0].ROIDisplayColor) == [255, 0, 0]


@pytest.mark.parametrize("rois, message", [
    ([], r"no ROIs given"),
    ([RoiSpec("A", np.zeros((6, 10, 12), dtype=bool))], r"ROI 'A': mask is empty"),
    ([RoiSpec("A", np.ones((6, 10, 11), dtype=bool))], r"ROI 'A': mask shape \(6, 10, 11\) is not the CT's"),
    ([RoiSpec("A", np.ones((6, 10, 12), dtype=np.uint8))], r"ROI 'A': mask must be boolean"),
    ([RoiSpec("A", np.ones((6, 10, 12), dtype=bool), "TUMOUR")], r"type 'TUMOUR' is not an RTROIInterpretedType"),
    ([RoiSpec("A", np.ones((6, 10, 12), dtype=bool))] * 2, r"ROI names repeat"),
    ([RoiSpec("A", np.ones((6, 10, 12), dtype=bool), color=(0, 0, 300))], r"color .* three integers 0-255"),
])
def test_rtstruct_refusals(rois, message):
    with pytest.raises(DicomInputError, match=message):
        _rtstruct(_ct(), rois)


def test_rtstruct_refuses_a_ct_of_another_frame_of_reference():
    ct = _ct()
    for ds in ct:
        ds.FrameOfReferenceUID = derive_uid("elsewhere")
    with pytest.raises(DicomInputError, match=r"FrameOfReferenceUID .*, the study"):
        _rtstruct(ct, [RoiSpec("A", np.ones((6, 10, 12), dtype=bool))])


# --- RT Ion Plan ----------------------------------------------------------------------------------------------

def test_ion_plan_is_written_as_planning_systems_write_it():
    beams = [util.beam(1, energies=(100.0, 110.0)), util.beam(2, spots_per_layer=1, range_shifter=True)]
    ds = _through_bytes(build_ion_plan(STUDY, beams, sop_instance_uid=derive_uid("plan"),
                                       series_instance_uid=derive_uid("plan-series"), label="Unit plan",
                                       fractions_planned=30, referenced_structure_set_uid="1.2.3.4",
                                       treatment_machine="Gantry 1", created=WHEN))
    _assert_part10(ds, sop.RT_ION_PLAN)
    assert ds.Modality == "RTPLAN" and ds.RTPlanGeometry == "PATIENT" and ds.FrameOfReferenceUID == FRAME
    assert ds.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert ds.PatientSetupSequence[0].PatientPosition == "HFS"
    group = ds.FractionGroupSequence[0]
    assert group.NumberOfFractionsPlanned == 30 and group.NumberOfBeams == 2
    assert [float(b.BeamMeterset) for b in group.ReferencedBeamSequence] == [6.0, 0.5 + 1.0]
    first = ds.IonBeamSequence[0]
    assert (first.RadiationType, first.ScanMode, first.TreatmentDeliveryType) == ("PROTON", "MODULATED", "TREATMENT")
    assert first.TreatmentMachineName == "Generic"  # the beam's own name wins over the plan default
    cps = first.IonControlPointSequence
    assert first.NumberOfControlPoints == len(cps) == 4
    assert [cp.ControlPointIndex for cp in cps] == [0, 1, 2, 3]
    assert [float(cp.CumulativeMetersetWeight) for cp in cps] == [0.0, 2.0, 2.0, 6.0]
    assert float(first.FinalCumulativeMetersetWeight) == 6.0
    assert list(cps[1].ScanSpotMetersetWeights) == [0.0] * 4  # the closing control point of each pair
    assert list(cps[1].ScanSpotPositionMap) == list(cps[0].ScanSpotPositionMap)
    assert float(cps[0].GantryAngle) == 0.0 and "GantryAngle" not in cps[1]
    assert float(cps[0].SnoutPosition) == 421.0
    second = ds.IonBeamSequence[1]
    assert isinstance(second.IonControlPointSequence[0].ScanSpotMetersetWeights, float)
    assert second.NumberOfRangeShifters == 1 and second.RangeShifterSequence[0].RangeShifterID == "RS_7.5cm"
    setting = second.IonControlPointSequence[0].RangeShifterSettingsSequence[0]
    assert setting.RangeShifterSetting == "IN" and setting.IsocenterToRangeShifterDistance == 300.0


def test_ion_plan_round_trips_exactly():
    beams = [util.beam(1, energies=(70.0, 71.5, 200.25), spots_per_layer=9, mu=0.125, gantry=270.0, couch=15.0),
             util.beam(2, spots_per_layer=1, range_shifter=True, gantry=45.5)]
    beams[0].layers[1].number_of_paintings = 4
    beams[0].layers[2].spot_tune_id = "6.5"
    ds = build_ion_plan(STUDY, beams, sop_instance_uid=derive_uid("rt"), series_instance_uid=derive_uid("rt-s"),
                        label="Round trip", fractions_planned=2)
    plan = read_ion_plan(_through_bytes(ds))
    assert util.beam_differences(plan.beams, beams) == []
    assert plan.fractions_planned == 2 and plan.referenced_structure_set_uid is None
    assert ds.RTPlanGeometry == "TREATMENT_DEVICE"  # no structure set to be PATIENT with


def _layer(**changes):
    values = dict(nominal_energy_mev=100.0, spot_x_mm=np.zeros(2), spot_y_mm=np.zeros(2), spot_mu=np.ones(2))
    values.update(changes)
    return EnergyLayer(**values)


def _beam_with(layer=None, **changes):
    beam = util.beam()
    if layer is not None:
        beam.layers = [layer]
        beam.meterset_mu = float(np.sum(layer.spot_mu))
    for name, value in changes.items():
        setattr(beam, name, value)
    return beam


@pytest.mark.parametrize("beams, message", [
    ([], r"ion plan: no beams"),
    ([_beam_with(meterset_mu=7.0)], r"beam 1: meterset_mu 7 is not the sum of its spots' MU \(6\)"),
    ([_beam_with(_layer(spot_mu=np.array([1.0, -1.0])))], r"beam 1 layer 1: negative spot MU"),
    ([_beam_with(_layer(spot_mu=np.zeros(2)))], r"beam 1: no spot has positive MU"),
    ([_beam_with(_layer(nominal_energy_mev=0.0))], r"beam 1 layer 1: energy 0 MeV is outside \(0, 400\]"),
    ([_beam_with(_layer(spot_x_mm=np.zeros(3)))], r"beam 1 layer 1: 3 spot x, 2 spot y and 2 MU values"),
    ([_beam_with(_layer(spot_y_mm=np.array([0.0, np.inf])))], r"spot positions and MU must be finite"),
    ([_beam_with(_layer(range_shifter_in=True))], r"beam 1: a layer has its range shifter in but the beam has no"),
    ([_beam_with(radiation_type="PHOTON")], r"beam 1: radiation_type 'PHOTON'"),
    ([_beam_with(scan_mode="UNIFORM")], r"beam 1: scan_mode 'UNIFORM'"),
    ([_beam_with(layers=[])], r"beam 1: no energy layers"),
    ([util.beam(1), util.beam(1)], r"beam numbers must be distinct"),
    ([util.beam(n) for n in range(1, 52)], r"51 beams; at most 50"),
])
def test_ion_plan_refusals(beams, message):
    with pytest.raises(DicomInputError, match=message):
        build_ion_plan(STUDY, beams, sop_instance_uid=derive_uid("bad"), series_instance_uid=derive_uid("bad-s"),
                       label="bad", fractions_planned=1)


@pytest.mark.parametrize("arguments, message", [
    (dict(fractions_planned=0), r"fractions_planned must be a whole number of at least 1"),
    (dict(fractions_planned=2.5), r"fractions_planned must be a whole number"),
    (dict(label="a label longer than sixteen"), r"label must be text of at most 16 characters"),
    (dict(sop_instance_uid="1.2.x"), r"sop_instance_uid '1.2.x' is not a valid DICOM UID"),
    (dict(referenced_structure_set_uid="01.2"), r"referenced_structure_set_uid '01.2' is not a valid"),
])
def test_ion_plan_argument_refusals(arguments, message):
    values = dict(sop_instance_uid=derive_uid("bad"), series_instance_uid=derive_uid("bad-s"), label="bad",
                  fractions_planned=1)
    values.update(arguments)
    with pytest.raises(DicomInputError, match=message):
        build_ion_plan(STUDY, [util.beam()], **values)


# --- RTDOSE ---------------------------------------------------------------------------------------------------

def _grid(shape=(7, 9, 11), origin=(-10.5, 20.25, -33.0), spacing=(2.0, 2.5, 3.0), seed=3) -> DoseGrid:
    rng = np.random.default_rng(seed)
    dose = (rng.gamma(2.0, 1.0, size=shape) * 25.0).astype(np.float32)
    dose[0, 0, 0] = 0.0
    return DoseGrid(dose_gy=dose, origin_mm=origin, spacing_mm=spacing, frame_of_reference_uid=FRAME)


def _rtdose(grid, **kwargs):
    values = dict(sop_instance_uid=derive_uid("dose"), series_instance_uid=derive_uid("dose-s"),
                  referenced_plan_uid=derive_uid("plan"), series_description="Unit dose", created=WHEN)
    values.update(kwargs)
    return build_rtdose(grid, STUDY, **values)


def test_rtdose_geometry_and_references():
    grid = _grid()
    ds = _through_bytes(_rtdose(grid, content_description="MCsquare 1e6"))
    _assert_part10(ds, sop.RT_DOSE)
    assert ds.Modality == "RTDOSE" and ds.FrameOfReferenceUID == FRAME
    assert (ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("GY", "PHYSICAL", "PLAN")
    assert [float(v) for v in ds.ImagePositionPatient] == [-10.5, 20.25, -33.0]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.PixelSpacing] == [2.5, 2.0]
    assert [float(v) for v in ds.GridFrameOffsetVector] == [3.0 * k for k in range(7)]
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("GridFrameOffsetVector")
    assert (int(ds.NumberOfFrames), ds.Rows, ds.Columns) == (7, 9, 11)
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (32, 32, 0)
    assert ds.DoseComment == "MCsquare 1e6"
    reference = ds.ReferencedRTPlanSequence[0]
    assert reference.ReferencedSOPClassUID == sop.RT_ION_PLAN
    assert reference.ReferencedSOPInstanceUID == derive_uid("plan")
    assert int(ds.pixel_array.max()) <= 2**32 - 1 and int(ds.pixel_array.max()) > 3.9e9


def test_rtdose_scaling_is_accurate():
    grid = _grid()
    read = read_rtdose(_through_bytes(_rtdose(grid)))
    dose, back = grid.dose_gy.astype(np.float64), read.dose_gy.astype(np.float64)
    peak = dose.max()
    assert np.abs(back - dose).max() <= 1e-9 * peak
    significant = dose > 1e-3 * peak
    assert (np.abs(back - dose)[significant] / dose[significant]).max() < 1e-6
    assert back[0, 0, 0] == 0.0
    assert read.origin_mm == grid.origin_mm and read.spacing_mm == pytest.approx(grid.spacing_mm)
    assert read.frame_of_reference_uid == FRAME
    assert (read.dose_type, read.summation_type) == ("PHYSICAL", "PLAN")


def test_rtdose_of_zero_dose_and_of_one_frame():
    grid = _grid(shape=(1, 4, 5))
    grid.dose_gy[:] = 0.0
    read = read_rtdose(_through_bytes(_rtdose(grid)))
    assert read.dose_gy.shape == (1, 4, 5) and not read.dose_gy.any()
    assert read.spacing_mm == pytest.approx((2.0, 2.5, 3.0))


def test_read_rtdose_accepts_absolute_and_decreasing_frame_offsets():
    grid = _grid()
    relative = read_rtdose(_rtdose(grid))
    absolute = _rtdose(grid)
    absolute.GridFrameOffsetVector = [-33.0 + 3.0 * k for k in range(7)]
    for variant in (absolute, _decreasing(_rtdose(grid))):
        read = read_rtdose(_through_bytes(variant))
        np.testing.assert_array_equal(read.dose_gy, relative.dose_gy)
        assert read.origin_mm == relative.origin_mm and read.spacing_mm == pytest.approx(relative.spacing_mm)


def _decreasing(ds):
    """The same grid written from the top frame down, as some systems do."""
    frames = ds.pixel_array[::-1].copy()
    ds.PixelData = frames.astype("<u4").tobytes()
    ds.ImagePositionPatient = [-10.5, 20.25, -33.0 + 18.0]
    ds.GridFrameOffsetVector = [-3.0 * k for k in range(7)]
    return ds


@pytest.mark.parametrize("change, message", [
    (lambda g: g.dose_gy.__setitem__((1, 1, 1), -0.5), r"negative dose \(-0.5 Gy\)"),
    (lambda g: g.dose_gy.__setitem__((1, 1, 1), np.nan), r"must be finite"),
    (lambda g: g.dose_gy.__setitem__((1, 1, 1), np.inf), r"must be finite"),
    (lambda g: setattr(g, "dose_gy", np.zeros((0, 3, 3), dtype=np.float32)), r"non-empty \[z, y, x\] volume"),
    (lambda g: setattr(g, "spacing_mm", (2.0, -1.0, 3.0)), r"spacing .* must be three positive numbers"),
    (lambda g: setattr(g, "origin_mm", (0.0, np.nan, 0.0)), r"origin .* must be three finite numbers"),
    (lambda g: setattr(g, "frame_of_reference_uid", derive_uid("other")), r"FrameOfReferenceUID .*, the study"),
    (lambda g: setattr(g, "dose_type", "GUESSED"), r"dose_type 'GUESSED'"),
])
def test_rtdose_refusals(change, message):
    grid = _grid()
    change(grid)
    with pytest.raises(DicomInputError, match=message):
        _rtdose(grid)


def test_rtdose_refuses_a_bad_plan_reference():
    with pytest.raises(DicomInputError, match=r"referenced_plan_uid 'plan-1' is not a valid DICOM UID"):
        _rtdose(_grid(), referenced_plan_uid="plan-1")


def _set(keyword, value):
    return lambda ds: setattr(ds, keyword, value)


@pytest.mark.parametrize("change, message", [
    (_set("DoseUnits", "RELATIVE"), r"DoseUnits \(3004,0002\) is RELATIVE; only absolute dose"),
    (_set("ImageOrientationPatient", [0, 1, 0, 1, 0, 0]), r"ImageOrientationPatient \(0020,0037\) is \[0, 1, 0"),
    (_set("GridFrameOffsetVector", [0.0, 3.0]), r"GridFrameOffsetVector \(3004,000C\) has 2 values for 7 frames"),
    (_set("GridFrameOffsetVector", [0.0, 3.0, 6.0, 9.0, 12.0, 15.0, 19.0]), r"non-uniform frame spacing"),
    (_set("GridFrameOffsetVector", [5.0 + 3 * k for k in range(7)]), r"starts at 5, neither 0"),
    (_set("DoseGridScaling", 0.0), r"DoseGridScaling \(3004,000E\) is 0"),
    (_set("SOPClassUID", sop.CT_IMAGE), r"is CT Image Storage .*; expected RT Dose Storage"),
])
def test_read_rtdose_refusals(change, message):
    ds = _rtdose(_grid())
    change(ds)
    with pytest.raises(DicomInputError, match=message):
        read_rtdose(ds)


# --- determinism ----------------------------------------------------------------------------------------------

def test_same_inputs_give_the_same_bytes():
    grid = _grid()
    assert to_bytes(_rtdose(grid)) == to_bytes(_rtdose(copy.deepcopy(grid)))
    assert [to_bytes(ds) for ds in _ct()] == [to_bytes(ds) for ds in _ct()]
