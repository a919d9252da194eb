"""Plain-data RT objects passed between readers, builders and the dose engine.

Coordinates are DICOM patient coordinates in mm. Volumes are numpy arrays
indexed [z, y, x] (frame, row, column), with axis-aligned geometry: `origin_mm`
is the centre of voxel [0, 0, 0] as (x, y, z) and `spacing_mm` is (x, y, z).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PatientStudy:
    """Identity shared by every object of one study."""

    patient_id: str
    patient_name: str
    study_instance_uid: str
    frame_of_reference_uid: str
    study_id: str = "1"
    study_description: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""  # DICOM DA (YYYYMMDD), empty when unknown
    study_time: str = ""  # DICOM TM (HHMMSS), empty when unknown


@dataclass
class CtVolume:
    """A CT series as one Hounsfield-unit volume."""

    hu: np.ndarray  # [z, y, x], HU (rescale applied), float32 or int16
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    frame_of_reference_uid: str
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    sop_instance_uids: list[str] = field(default_factory=list)  # one per z slice, in z order

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    def bounds_mm(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """(low, high) along x, y and z: the outer faces of the edge voxels."""
        nz, ny, nx = self.shape_zyx
        return tuple((o - s / 2, o + (n - 0.5) * s)  # type: ignore[return-value]
                     for o, s, n in zip(self.origin_mm, self.spacing_mm, (nx, ny, nz)))

    def distance_outside_mm(self, point_mm: tuple[float, float, float]) -> float:
        """How far `point_mm` (x, y, z) lies outside the volume; 0 inside."""
        return math.hypot(*(max(low - p, 0.0, p - high) for p, (low, high) in zip(point_mm, self.bounds_mm())))


@dataclass
class DoseGrid:
    """An absolute dose on an axis-aligned grid.

    `dose_gy` is the dose of the whole plan (all planned fractions), matching
    RTDOSE DoseSummationType PLAN.
    """

    dose_gy: np.ndarray  # [z, y, x], Gy
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    frame_of_reference_uid: str
    dose_type: str = "PHYSICAL"  # RTDOSE DoseType: PHYSICAL or EFFECTIVE (RBE-weighted)
    summation_type: str = "PLAN"  # RTDOSE DoseSummationType; PLAN is the dose of all fractions

    def voxel_centre_mm(self, index_zyx: tuple[int, int, int]) -> tuple[float, float, float]:
        z, y, x = index_zyx
        ox, oy, oz = self.origin_mm
        sx, sy, sz = self.spacing_mm
        return (ox + x * sx, oy + y * sy, oz + z * sz)


@dataclass
class LetGrid:
    """Dose-averaged LET (LETd) on an axis-aligned grid, keV/µm; 0 where the dose is below `threshold_gy`."""

    let_kev_um: np.ndarray  # [z, y, x], keV/µm
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    frame_of_reference_uid: str
    threshold_gy: float = 0.0  # voxels with less (plan) dose carry LETd 0: LETd there is not meaningful

    def voxel_centre_mm(self, index_zyx: tuple[int, int, int]) -> tuple[float, float, float]:
        z, y, x = index_zyx
        ox, oy, oz = self.origin_mm
        sx, sy, sz = self.spacing_mm
        return (ox + x * sx, oy + y * sy, oz + z * sz)


@dataclass
class RangeShifter:
    """A range shifter named in IonBeamSequence > RangeShifterSequence."""

    number: int
    identifier: str  # RangeShifterID, matched against the beam model
    type: str = "BINARY"  # BINARY or ANALOG
    water_equivalent_thickness_mm: float | None = None  # from the control point settings
    isocenter_to_range_shifter_distance_mm: float | None = None


@dataclass
class EnergyLayer:
    """The spots delivered at one nominal energy (one or a pair of control points)."""

    nominal_energy_mev: float
    spot_x_mm: np.ndarray  # at the isocentre plane (ScanSpotPositionMap x)
    spot_y_mm: np.ndarray
    spot_mu: np.ndarray  # monitor units of each spot, one fraction
    spot_tune_id: str = ""
    number_of_paintings: int = 1
    range_shifter_in: bool = False

    @property
    def mu(self) -> float:
        return float(np.sum(self.spot_mu))


@dataclass
class IonBeam:
    number: int
    name: str
    gantry_angle_deg: float
    couch_angle_deg: float
    isocenter_mm: tuple[float, float, float]
    layers: list[EnergyLayer]
    meterset_mu: float  # BeamMeterset of one fraction
    radiation_type: str = "PROTON"
    scan_mode: str = "MODULATED"
    beam_type: str = "STATIC"
    treatment_machine: str = ""
    snout_position_mm: float | None = None
    range_shifters: list[RangeShifter] = field(default_factory=list)

    @property
    def spot_count(self) -> int:
        return int(sum(len(layer.spot_mu) for layer in self.layers))


@dataclass
class IonPlan:
    """An RT Ion Plan reduced to what dose computation needs."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    label: str
    fractions_planned: int
    beams: list[IonBeam]
    referenced_structure_set_uid: str | None = None
    name: str = ""

    @property
    def spot_count(self) -> int:
        return sum(beam.spot_count for beam in self.beams)

    @property
    def energies_mev(self) -> list[float]:
        return sorted({layer.nominal_energy_mev for b in self.beams for layer in b.layers})


@dataclass(frozen=True)
class SrMeasurement:
    """One measurement of a TID 1500 report (a Measurement Group with one numeric value on one image)."""

    concept: str  # CodeMeaning of the NUM item: "Length", "Area", ...
    value: float
    unit: str  # UCUM: "mm", "mm2", "deg", "mm3", "[hnsf'U]"
    referenced_sop_class_uid: str
    referenced_sop_instance_uid: str
    referenced_series_instance_uid: str
    graphic_type: str = "POLYLINE"  # SCOORD GraphicType
    graphic_data: tuple[float, ...] = ()  # column, row pairs
    frame_number: int | None = None
    tracking_identifier: str = ""  # e.g. "Cornerstone3DTools@^0.1.0:Length"
    tracking_uid: str = ""
    finding: str = ""  # free-text label the user gave


@dataclass
class PhotonBeam:
    """A static photon beam as an intensity map: beamlets (bixels) of one size on the beam's-eye view.

    Beamlet positions are the centres of the bixels on IEC beam-limiting-
    device X and Y at the isocentre plane; `beamlet_weight` is each bixel's
    fluence for one fraction, in the units `PhotonPlan.weight_unit` names.
    """

    number: int
    name: str
    gantry_angle_deg: float
    couch_angle_deg: float
    isocenter_mm: tuple[float, float, float]
    beamlet_x_mm: np.ndarray
    beamlet_y_mm: np.ndarray
    beamlet_weight: np.ndarray
    beamlet_size_mm: tuple[float, float]  # along X, along Y
    nominal_energy_mv: float = 6.0
    treatment_machine: str = ""

    @property
    def beamlet_count(self) -> int:
        return int(len(self.beamlet_weight))


@dataclass
class PhotonPlan:
    """A photon plan reduced to what its dose needs: beams of weighted beamlets sharing one isocentre."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    label: str
    fractions_planned: int
    beams: list[PhotonBeam]
    referenced_structure_set_uid: str | None = None
    name: str = ""
    # OpenTPS' CCC engine has no machine output calibration: its doses, and so the optimised weights, are relative.
    weight_unit: str = "CCC relative fluence"

    @property
    def beamlet_count(self) -> int:
        return sum(beam.beamlet_count for beam in self.beams)
