"""Benchmark: IMPT planning at scale, time per stage of today's path and of the levers of issue 14, from one run.

The case is the pelvis phantom (orthanc_rt.ops.phantom.patient_like_case through tests/support/pelvis.py: body in
air with fat, pelvic bone, femoral heads, bladder, rectum with a gas pocket, a prostate-like PTV between them; 2 mm
CT voxels), two lateral fields, 5 mm spots and layers, the prostate protocol (orthanc_rt.planning.protocols).
`--scale` is the size knob (of the PTV): 0.6 gives about 1,000 spots, 1.2 is prostate-sized (7,000 spots or so,
about an hour on two cores: extrapolate from a mid size instead).

Two plans of the same request, one after the other:
- today: beamlets and optimiser on the final dose's grid (optimization_grid_mm null), final dose at a fixed
  final_primaries (final_uncertainty_pct null);
- levers: beamlets and optimiser on the 3 mm grid, the final dose stopping at --uncertainty % (MCsquare's
  estimate) or at --final-cap primaries.
Prints per stage the seconds of each and their ratio, the beamlet matrix (voxels x spots, non-zeros, MB) and the
optimiser's time per iteration, the target's D95 and D2 of each final dose and the uncertainty reached.

    nice -n 10 .venv/bin/python -m bench.planning_scale [--scale 0.6] [--threads 1] [--beamlet-primaries 2000]
        [--final-primaries 1e6 (today)] [--final-cap 1e7 --uncertainty 1 (levers)] [--iterations 100]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

from orthanc_rt.planning.protocols import protocol_request
from tests.support.pelvis import pelvis_case
from worker.engines.beamlets import local_beamlets
from worker.planning.impt import plan_impt


def _count(text: str) -> int:
    return int(float(text))  # 1e7 as well as 10000000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.6, help="PTV size relative to 60 x 50 x 60 mm (the knob)")
    parser.add_argument("--beamlet-primaries", type=int, default=2000)
    parser.add_argument("--final-primaries", type=_count, default=1_000_000)
    parser.add_argument("--final-cap", type=_count, default=10_000_000)
    parser.add_argument("--uncertainty", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    case = pelvis_case(args.scale)
    base = protocol_request("prostate", target_roi="PTV")
    base = dataclasses.replace(base, gantry_angles_deg=(90.0, 270.0), beamlet_primaries=args.beamlet_primaries,
                               final_primaries=args.final_primaries, max_iterations=args.iterations)
    paths = {"today": dataclasses.replace(base, optimization_grid_mm=None, final_uncertainty_pct=None),
             "levers": dataclasses.replace(base, final_primaries=args.final_cap,
                                           final_uncertainty_pct=args.uncertainty)}
    print(f"pelvis phantom: PTV scale {args.scale:g} ({case.target_cc:.0f} cc), CT {case.ct.shape_zyx} "
          f"(z, y, x) at {case.ct.spacing_mm} mm")
    rows = {}
    work = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-scale-"))
    try:
        for name, request in paths.items():
            matrix = {}

            def runner(*a, **kw):
                nominal, scenarios = local_beamlets(*a, **kw)
                sparse = nominal.toSparseMatrix()
                matrix.update(shape=sparse.shape, nnz=sparse.nnz,
                              mb=(sparse.data.nbytes + sparse.indices.nbytes + sparse.indptr.nbytes) / 1e6)
                return nominal, scenarios

            result = plan_impt(case.ct, case.masks, request, work_dir=work / name, threads=args.threads,
                               beamlet_runner=runner)
            times = result.optimizer.times
            rows[name] = {"building plan": times.building_plan_s, "beamlets": times.beamlets_s,
                          "optimizing": times.optimizing_s, "final dose": times.final_dose_s,
                          "total": sum(vars(times).values()),
                          "per iteration": times.optimizing_s / max(result.optimizer.iterations, 1),
                          "matrix MB": matrix["mb"], "matrix voxels": matrix["shape"][0], "nnz": matrix["nnz"]}
            target = result.qa["PTV"]
            print(f"{name}: {result.spot_count} spots, beamlets {matrix['shape'][0]} voxels x {matrix['shape'][1]} "
                  f"spots, {matrix['nnz']:.3g} non-zeros, {matrix['mb']:.0f} MB; {result.optimizer.iterations} "
                  f"iterations; PTV D95 {100 * target['D95'] / request.prescription_gy:.1f} %, "
                  f"D2 {100 * target['D2'] / request.prescription_gy:.1f} %; final dose uncertainty "
                  f"{result.final_uncertainty_pct} %")
            shutil.rmtree(work / name, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'':16}{'today':>12}{'levers':>12}{'ratio':>8}")
    for key in rows["today"]:
        today, levers = rows["today"][key], rows["levers"][key]
        print(f"{key:16}{today:12.4g}{levers:12.4g}{levers / today if today else float('nan'):8.2f}")


if __name__ == "__main__":
    main()
