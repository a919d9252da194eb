"""Cutting a plan's beamlets into parts, and what a part carries between hosts.

A part is a contiguous range of the plan's spots in plan order (beam, layer,
spot), so the parts' matrices side by side are the plan's matrix. Parts are
balanced by Monte Carlo cost, not by count: MCsquare's time per primary grows
with the path it follows, about the range, which grows as E^1.77
(Bragg-Kleeman rule for water), so a part of high-energy spots holds fewer.

A part's spots travel as an `IonPlan` (plain data; RQ pickles it with the
job); the CT and parameters as one compressed blob per plan (`pack_context`);
results as compressed scipy CSC arrays (`pack_matrices`). None of it is
pickled OpenTPS objects or paths on the parent's disk.
"""
from __future__ import annotations

import io
import json
import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from opentps.core.data.images import CTImage
from opentps.core.data.plan import PlanProtonBeam, PlanProtonLayer, ProtonPlan

from orthanc_rt.dicom.models import IonPlan
from orthanc_rt.errors import BeamletFanoutError
from worker.engines.beamlets import ScenarioErrors
from worker.engines.mcsquare import ScoringGrid
from worker.engines.plan_convert import from_opentps_plan
from worker.engines.proton_dose import BeamModel, fill_spots

_RANGE_EXPONENT = 1.77  # see the module docstring


@dataclass(frozen=True)
class Part:
    index: int  # 0-based, plan order
    start: int  # first column (spot) of the plan
    stop: int

    @property
    def spots(self) -> int:
        return self.stop - self.start

    def label(self, count: int) -> str:
        return f"beamlet part {self.index + 1}/{count} (spots {self.start + 1}-{self.stop})"


def part_count(spots: int, split_spots: int, executors: int) -> int:
    """One part when this process is alone (no overhead: the single-process computation); else parts of at
    most `split_spots` spots, and at least one per process that may compute them."""
    if spots < 1 or executors <= 1:
        return 1
    return max(1, min(spots, max(math.ceil(spots / split_spots), executors)))


def split_plan(energies_mev: np.ndarray, count: int) -> list[Part]:
    """`count` contiguous parts of the plan's spots (given by their energies, plan order) of about equal cost."""
    spots = len(energies_mev)
    count = max(1, min(count, spots))
    cost = np.cumsum(np.power(np.asarray(energies_mev, dtype=np.float64), _RANGE_EXPONENT))
    # Cut where the cumulative cost crosses k/count of the total; every part keeps at least one spot.
    cuts = [0]
    for k in range(1, count):
        cut = int(np.searchsorted(cost, cost[-1] * k / count, side="right"))
        cuts.append(min(max(cut, cuts[-1] + 1), spots - (count - k)))
    cuts.append(spots)
    return [Part(index, start, stop) for index, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:]))]


def part_plans(plan: ProtonPlan, parts: list[Part]) -> list[IonPlan]:
    """Each part's spots as a plan of their own (unit MU, the plan's beam geometry)."""
    weights = np.array(plan.spotMUs, dtype=np.float64)
    plan.spotMUs = np.ones_like(weights)  # every spot kept by the conversion; restored below (the caller's plan)
    try:
        whole = from_opentps_plan(plan, sop_instance_uid="1.2.3", series_instance_uid="1.2.3.1",
                                  study_instance_uid="1.2.3.2", frame_of_reference_uid="", label="beamlets")
    finally:
        plan.spotMUs = weights
    if whole.spot_count != len(weights):
        raise BeamletFanoutError(f"the plan's {len(weights)} spots became {whole.spot_count} in conversion")
    return [slice_plan(whole, part.start, part.stop) for part in parts]


def slice_plan(plan: IonPlan, start: int, stop: int) -> IonPlan:
    """The spots [start, stop) of `plan`, counted in plan order (beam, layer, spot), with their beams and layers."""
    beams, offset = [], 0
    for beam in plan.beams:
        layers = []
        for layer in beam.layers:
            count = len(layer.spot_mu)
            low, high = max(start - offset, 0), min(stop - offset, count)
            if low < high:
                layers.append(replace(layer, spot_x_mm=np.asarray(layer.spot_x_mm)[low:high],
                                      spot_y_mm=np.asarray(layer.spot_y_mm)[low:high],
                                      spot_mu=np.asarray(layer.spot_mu)[low:high]))
            offset += count
        if layers:
            beams.append(replace(beam, layers=layers, meterset_mu=float(sum(layer.mu for layer in layers))))
    return replace(plan, beams=beams)


def proton_plan(part: IonPlan) -> ProtonPlan:
    """The part as the OpenTPS plan MCsquare's writer reads, as the planner designed it.

    Not `dose_engine.to_opentps_plan`: that one refuses what a stored plan
    may not hold (energies outside the beam model, for one), while a part
    must be simulated exactly as the whole plan would be in one process.
    """
    plan = ProtonPlan(name="beamlets")
    plan.numberOfFractionsPlanned = int(part.fractions_planned)
    for source in part.beams:
        beam = PlanProtonBeam()
        beam.name, beam.id = source.name, source.number
        beam.gantryAngle, beam.couchAngle = float(source.gantry_angle_deg), float(source.couch_angle_deg)
        beam.isocenterPosition = [float(v) for v in source.isocenter_mm]
        for layer in source.layers:
            converted = PlanProtonLayer(nominalEnergy=float(layer.nominal_energy_mev))
            converted.numberOfPaintings = int(layer.number_of_paintings)
            fill_spots(converted, *(np.asarray(a, dtype=np.float64) for a in (layer.spot_x_mm, layer.spot_y_mm,
                                                                              layer.spot_mu)))
            beam.appendLayer(converted)
        plan.appendBeam(beam)
    return plan


def pack_context(ct: CTImage, grid: ScoringGrid, primaries: int, errors: ScenarioErrors | None,
                  model: BeamModel) -> bytes:
    hu = np.asarray(ct.imageArray)
    # Whole HU values fit int16 losslessly: half the bytes of float32 and far better compression.
    whole = bool(np.all(np.isfinite(hu)) and np.all(hu == np.round(hu))
                 and hu.min() >= np.iinfo(np.int16).min and hu.max() <= np.iinfo(np.int16).max)
    meta = {"origin": [float(v) for v in ct.origin], "spacing": [float(v) for v in ct.spacing],
            "grid": {"origin_mm": list(grid.origin_mm), "spacing_mm": list(grid.spacing_mm),
                     "size_xyz": list(grid.size_xyz)},
            "primaries": int(primaries), "bdl": Path(model.bdl_path).name,
            "errors": None if errors is None else [errors.setup_mm, errors.range_pct]}
    buffer = io.BytesIO()
    np.savez(buffer, hu=hu.astype(np.int16 if whole else np.float32), meta=np.frombuffer(
        json.dumps(meta).encode(), dtype=np.uint8))
    return zlib.compress(buffer.getvalue(), 1)


def unpack_context(blob: bytes) -> tuple[CTImage, ScoringGrid, int, ScenarioErrors | None, str]:
    with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as data:
        hu = data["hu"]
        meta = json.loads(data["meta"].tobytes())
    ct = CTImage(imageArray=np.ascontiguousarray(hu, dtype=np.float32), origin=tuple(meta["origin"]),
                 spacing=tuple(meta["spacing"]))
    g = meta["grid"]
    grid = ScoringGrid(origin_mm=tuple(g["origin_mm"]), spacing_mm=tuple(g["spacing_mm"]),
                       size_xyz=tuple(int(n) for n in g["size_xyz"]))
    errors = None if meta["errors"] is None else ScenarioErrors(*meta["errors"])
    return ct, grid, int(meta["primaries"]), errors, meta["bdl"]


def pack_matrices(matrices: list[sp.csc_matrix]) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    for k, matrix in enumerate(matrices):
        matrix = sp.csc_matrix(matrix, dtype=np.float32)
        arrays.update({f"data{k}": matrix.data, f"indices{k}": matrix.indices.astype(np.int32),
                       f"indptr{k}": matrix.indptr.astype(np.int64), f"shape{k}": np.array(matrix.shape)})
    buffer = io.BytesIO()
    np.savez(buffer, count=np.array(len(matrices)), **arrays)
    return zlib.compress(buffer.getvalue(), 1)


def unpack_matrices(blob: bytes) -> list[sp.csc_matrix]:
    with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as data:
        return [sp.csc_matrix((data[f"data{k}"], data[f"indices{k}"], data[f"indptr{k}"]),
                              shape=tuple(int(n) for n in data[f"shape{k}"]))
                for k in range(int(data["count"]))]
