"""'TPS exports' made here: a plan with a dose computed independently of the check's recompute, labelled as
another planning system's, as clinics export them (the dose references the plan; Manufacturer is the TPS's)."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.models import DoseGrid
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.ops.phantom import PhantomCase

TPS_MANUFACTURER = "RaySearch Laboratories"


def tps_dose_grid(case: PhantomCase, work_dir: Path, *, primaries: int, spacing_mm: float | None) -> DoseGrid:
    """The case plan's dose by MCsquare through OpenTPS, on a grid of its own (not the CT's), in this process:
    a seed (and with `spacing_mm`, a grid) other than the check's recompute's."""
    from worker.engines.proton_dose import compute_dose

    return compute_dose(case.ct_volume, read_ion_plan(case.plan), primaries=primaries, work_dir=work_dir,
                        scoring_spacing_mm=spacing_mm)


def tps_rtdose(case: PhantomCase, grid: DoseGrid, plan: Dataset, *, name: str, summation: str = "PLAN",
               shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0), scale: float = 1.0,
               manufacturer: str = TPS_MANUFACTURER) -> Dataset:
    """`grid` as another system's RTDOSE of `plan` (optionally shifted or scaled: deliberate errors)."""
    moved = replace(grid, origin_mm=tuple(o + s for o, s in zip(grid.origin_mm, shift_mm)),
                    dose_gy=(np.asarray(grid.dose_gy) * scale).astype(np.float32), summation_type=summation)
    ds = build_rtdose(moved, case.study, sop_instance_uid=derive_uid("tps", case.name, name, "dose"),
                      series_instance_uid=derive_uid("tps", case.name, name, "dose-series"),
                      referenced_plan_uid=str(plan.SOPInstanceUID), series_description=f"TPS dose {name}")
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = "RayStation"
    return ds


def with_mu_scaled(plan: Dataset, factor: float, *, name: str) -> Dataset:
    """A copy of the plan (own SOPInstanceUID) whose every spot weight and meterset is `factor` times the original:
    the plan does not deliver the dose the TPS computed."""
    variant = copy.deepcopy(plan)
    variant.SOPInstanceUID = derive_uid("tps", str(plan.SOPInstanceUID), name)
    for beam in variant.IonBeamSequence:
        beam.FinalCumulativeMetersetWeight = float(beam.FinalCumulativeMetersetWeight) * factor
        for point in beam.IonControlPointSequence:
            point.CumulativeMetersetWeight = float(point.CumulativeMetersetWeight) * factor
            if "ScanSpotMetersetWeights" in point:
                weights = point.ScanSpotMetersetWeights
                point.ScanSpotMetersetWeights = [float(w) * factor for w in
                                                 (weights if isinstance(weights, (list, tuple))
                                                  or hasattr(weights, "__iter__") else [weights])]
    for group in variant.FractionGroupSequence:
        for beam in group.ReferencedBeamSequence:
            if "BeamMeterset" in beam:
                beam.BeamMeterset = float(beam.BeamMeterset) * factor
    return variant
