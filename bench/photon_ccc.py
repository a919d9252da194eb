"""CCC photon beamlets: our job-folder runner vs OpenTPS' CCCDoseCalculator, threads, dose grid; one run.

    PYTHONPATH=. .venv/bin/python -m bench.photon_ccc [--rounds 2]

The same water phantom and the same beamlets (OpenTPS' photon plan design,
two beams) go through OpenTPS' own `CCCDoseCalculator.computeBeamlets`
(pointed at a temporary simulation folder, with `batchSize` 2) and through
`worker.engines.ccc.compute_beamlets` with 2 processes, 1 process, and on
a dose grid twice as coarse. Prints the best time of each and the ratios to
OpenTPS' (the runner's overhead target: ratio <= 1.05).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from opentps.core.processing.doseCalculation.photons.cccDoseCalculator import CCCDoseCalculator  # noqa: E402

from orthanc_rt.ops.phantom import water_phantom_case  # noqa: E402
from orthanc_rt.planning import ccc_engine as photon_ccc  # noqa: E402
from orthanc_rt.planning.request import PlanRequest  # noqa: E402
from worker.engines.ccc import compute_beamlets  # noqa: E402
from worker.engines.proton_dose import default_beam_model, scoring_grid, to_opentps_ct  # noqa: E402
from worker.planning.photon import density_grid, design_plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    case = water_phantom_case("bench-ccc", size_mm=(100.0, 120.0, 80.0), spacing_mm=3.0, target_size_mm=30.0,
                              target_depth_mm=60.0, energy_mev=100.0)
    ct = case.ct_volume
    request = PlanRequest("TargetVolume", 2.0, gantry_angles_deg=(0.0, 90.0))
    calibration = default_beam_model().calibration
    engine = photon_ccc.locate(kernels="Kernels_differentFluence")  # the kernels OpenTPS' calculator uses

    designed = design_plan(ct, case.target_mask, request)

    def opentps() -> None:
        plan = design_plan(ct, case.target_mask, request).opentps_plan  # a fresh plan: the calculator edits it
        calculator = CCCDoseCalculator(batchSize=2)
        with tempfile.TemporaryDirectory(prefix="bench-ccc-opentps-") as folder:
            calculator._simulationDirectory = folder
            calculator.ctCalibration = calibration
            calculator.computeBeamlets(to_opentps_ct(ct), plan)

    def ours(threads: int, spacing: float | None = None) -> None:
        grid = scoring_grid(ct, spacing)
        with tempfile.TemporaryDirectory(prefix="bench-ccc-") as folder:
            compute_beamlets(density_grid(ct, grid), designed.isocenter_mm, designed.beamlets, work_dir=Path(folder),
                             threads=threads, engine=engine)

    runs = {"OpenTPS CCCDoseCalculator (2 batches)": opentps, "ours, 2 processes": lambda: ours(2),
            "ours, 1 process": lambda: ours(1), "ours, 2 processes, 6 mm dose grid": lambda: ours(2, 6.0)}
    best = {name: float("inf") for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    reference = best["OpenTPS CCCDoseCalculator (2 batches)"]
    print(f"{len(designed.beamlets)} beamlets, CT {ct.shape_zyx} voxels of {ct.spacing_mm[0]:g} mm, "
          f"best of {args.rounds}")
    for name, seconds in best.items():
        print(f"  {name:40s} {seconds:7.2f} s   ratio to OpenTPS {seconds / reference:.3f}")


if __name__ == "__main__":
    main()
