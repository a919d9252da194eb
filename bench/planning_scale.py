"""Benchmark: IMPT planning at scale, time per stage of today's path and of the levers of issue 14, from one run.

The case is the pelvis phantom (orthanc_rt.ops.phantom.patient_like_case through tests/support/pelvis.py: body in
air with fat, pelvic bone, femoral heads, bladder, rectum with a gas pocket, a prostate-like PTV between them; 2 mm
CT voxels), two lateral fields, 5 mm spots and layers, the prostate protocol (orthanc_rt.planning.protocols).
`--scale` is the size knob (of the PTV): 0.6 gives about 1,000 spots, 1.32 is the issue's prostate (216 cc, 6,945
spots: 449 s on an idle 2-core machine with `--paths ours --beamlet-primaries 1000 --final-cap 1e7`, then with the
final dose on the CT's 2 mm grid; the protocol now puts it on 3 mm; today's path would take hours).

Plans of the same request, one after the other (`--paths`, the first is the reference of the ratios):
- today: beamlets and OpenTPS' optimiser on the final dose's grid (optimization_grid_mm null), final dose at a
  fixed final_primaries (final_uncertainty_pct null);
- levers: beamlets and OpenTPS' optimiser on the 3 mm grid, the final dose stopping at --uncertainty % (MCsquare's
  estimate) or at --final-cap primaries;
- ours: the levers with our optimiser (worker.planning.optimizer) instead of OpenTPS'.
Paths on the same grid share one beamlet computation (the first one's, copied), so their optimisers see the same
matrix; the later paths' beamlet time is then the first one's. Prints per stage the seconds of each and their
ratio, the beamlet matrix (voxels x spots, non-zeros, MB), the optimiser's iterations and time per iteration, its
final objective, and the request's clinical goals on each final dose (PTV D95 / D2, rectum and bladder V70Gy,
femoral heads Dmax) with the uncertainty reached.

    nice -n 10 .venv/bin/python -m bench.planning_scale [--scale 0.6] [--threads 1] [--beamlet-primaries 2000]
        [--final-primaries 1e6 (today)] [--final-cap 1e7 --uncertainty 1 (levers)] [--iterations 100]
        [--paths today,levers | levers,ours | ours]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import tempfile
from pathlib import Path

from orthanc_rt.planning.protocols import protocol_request
from tests.support.pelvis import pelvis_case
from worker.engines.beamlets import local_beamlets
from worker.planning.impt import plan_impt

PATHS = ("today", "levers", "ours")
OUR_OPTIMIZER = "orthanc-rt"


def _count(text: str) -> int:
    return int(float(text))  # 1e7 as well as 10000000


def _paths(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PATHS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"paths are a comma list of {', '.join(PATHS)}, not {text!r}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.6, help="PTV size relative to 60 x 50 x 60 mm (the knob)")
    parser.add_argument("--beamlet-primaries", type=int, default=2000)
    parser.add_argument("--final-primaries", type=_count, default=1_000_000)
    parser.add_argument("--final-cap", type=_count, default=10_000_000)
    parser.add_argument("--uncertainty", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--paths", type=_paths, default=("today", "levers"))
    args = parser.parse_args()
    case = pelvis_case(args.scale)
    base = protocol_request("prostate", target_roi="PTV")
    base = dataclasses.replace(base, gantry_angles_deg=(90.0, 270.0), beamlet_primaries=args.beamlet_primaries,
                               final_primaries=args.final_primaries, max_iterations=args.iterations)
    levers = dataclasses.replace(base, final_primaries=args.final_cap, final_uncertainty_pct=args.uncertainty,
                                 optimizer="Scipy_L-BFGS-B")
    requests = {"today": dataclasses.replace(base, optimization_grid_mm=None, final_uncertainty_pct=None,
                                             optimizer="Scipy_L-BFGS-B"),
                "levers": levers, "ours": dataclasses.replace(levers, optimizer=OUR_OPTIMIZER)}
    print(f"pelvis phantom: PTV scale {args.scale:g} ({case.target_cc:.0f} cc), CT {case.ct.shape_zyx} "
          f"(z, y, x) at {case.ct.spacing_mm} mm")
    rows = {}
    computed = {}  # grid -> beamlets: paths on one grid share them
    beamlet_s = {}  # grid -> seconds of the path that computed them
    work = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-scale-"))
    try:
        for name in args.paths:
            request = requests[name]
            matrix = {}

            def runner(ct, plan, model, grid, **kw):
                key = (grid.size_xyz, grid.spacing_mm, grid.origin_mm)
                matrix["key"] = key
                if key not in computed:
                    computed[key] = local_beamlets(ct, plan, model, grid, **kw)
                    matrix["computed"] = True
                nominal, scenarios = copy.deepcopy(computed[key])  # the optimisers crop what they get
                sparse = nominal.toSparseMatrix()
                matrix.update(shape=sparse.shape, nnz=sparse.nnz,
                              mb=(sparse.data.nbytes + sparse.indices.nbytes + sparse.indptr.nbytes) / 1e6)
                return nominal, scenarios

            result = plan_impt(case.ct, case.masks, request, work_dir=work / name, threads=args.threads,
                               beamlet_runner=runner)
            times = result.optimizer.times
            if matrix.get("computed"):
                beamlet_s[matrix["key"]] = times.beamlets_s
            else:  # the copy took no time: count the computation it stands for
                times = dataclasses.replace(times, beamlets_s=beamlet_s[matrix["key"]])
            rows[name] = {"building plan": times.building_plan_s, "beamlets": times.beamlets_s,
                          "optimizing": times.optimizing_s, "final dose": times.final_dose_s,
                          "total": sum(vars(times).values()), "iterations": result.optimizer.iterations,
                          "per iteration": times.optimizing_s / max(result.optimizer.iterations, 1),
                          "objective": result.optimizer.objective_final,
                          "matrix MB": matrix["mb"], "matrix voxels": matrix["shape"][0], "nnz": matrix["nnz"],
                          "uncertainty %": result.final_uncertainty_pct or float("nan")}
            goals = "; ".join(f"{g['roi']} {g['metric']} {g['value']}{'' if g['unit'] == '%' else ' Gy'}"
                              f"{' ok' if g['passed'] else ' FAILED'}" for g in result.goals)
            for goal in result.goals:
                rows[name][f"{goal['roi']} {goal['metric']}"] = float("nan") if goal["value"] is None \
                    else goal["value"]
            target = result.qa["PTV"]
            print(f"{name} ({request.optimizer}): {result.spot_count} spots, beamlets {matrix['shape'][0]} voxels x "
                  f"{matrix['shape'][1]} spots, {matrix['nnz']:.3g} non-zeros, {matrix['mb']:.0f} MB; "
                  f"{result.optimizer.iterations} iterations, objective {rows[name]['objective']:.5g}; "
                  f"PTV D95 {100 * target['D95'] / request.prescription_gy:.1f} %, "
                  f"D2 {100 * target['D2'] / request.prescription_gy:.1f} %; final dose uncertainty "
                  f"{result.final_uncertainty_pct} %; goals: {goals}", flush=True)
            shutil.rmtree(work / name, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    names = list(rows)
    reference = names[0]
    print(f"{'':22}" + "".join(f"{n:>12}" for n in names) + "".join(f"{n + '/' + reference:>16}" for n in names[1:]))
    for key in rows[reference]:
        values = [rows[n].get(key, float("nan")) for n in names]
        ratios = [v / values[0] if values[0] else float("nan") for v in values[1:]]
        print(f"{key:22}" + "".join(f"{v:12.4g}" for v in values) + "".join(f"{r:16.2f}" for r in ratios))


if __name__ == "__main__":
    main()
