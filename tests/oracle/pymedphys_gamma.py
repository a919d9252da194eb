"""The gamma oracle: pymedphys.gamma on two dose grids, pass rates printed as JSON.

Runs in the oracle virtualenv (.venv-oracle, made by `scripts/install.sh --dev`:
pymedphys 0.41.0 with numba and scipy on numpy 1.26) so Orthanc-RT's own
environment never gets pymedphys. Usage:

    python pymedphys_gamma.py INPUT.npz [OUTPUT.npz]

INPUT.npz holds `reference` and `evaluated` ([z, y, x] Gy, one grid),
`spacing_xyz` (mm) and `criteria`, one row per gamma to compute:
(dose %, distance mm, low-dose threshold % of the reference maximum,
local 0/1, max_gamma, interp_fraction). pymedphys is configured as
orthanc_rt.analysis.gamma describes: global_normalisation = the reference
maximum, lower_percent_dose_cutoff = the threshold. The gamma maps go to
OUTPUT.npz (gamma_0, gamma_1, ...) when it is given.
"""
import json
import sys
import time

import numpy as np
import pymedphys


def main(input_path: str, output_path: str | None) -> None:
    data = np.load(input_path)
    reference, evaluated = data["reference"].astype(np.float64), data["evaluated"].astype(np.float64)
    sx, sy, sz = (float(s) for s in data["spacing_xyz"])
    # Centred, like patient coordinates: pymedphys compares positions in mm, and with an axis starting at 0
    # an offset of -1e-16 mm (cos(pi / 2) * r) would take a point on the first slice off the grid.
    axes = tuple((np.arange(n) - (n - 1) / 2) * s for n, s in zip(reference.shape, (sz, sy, sx)))
    out = {"oracle": f"pymedphys {pymedphys.__version__}", "numpy": np.__version__, "results": []}
    # Load (or compile, the first time) the numba interpolation outside the timed calls.
    small = np.ones((4, 4, 4))
    pymedphys.gamma(tuple(np.arange(4.0) for _ in range(3)), small, tuple(np.arange(4.0) for _ in range(3)),
                    small, 3, 2)
    maps = {}
    for i, (dose, dta, threshold, local, max_gamma, interp_fraction) in enumerate(data["criteria"]):
        wall, cpu = time.perf_counter(), time.process_time()
        gamma = pymedphys.gamma(axes, reference, axes, evaluated, float(dose), float(dta),
                                lower_percent_dose_cutoff=float(threshold), interp_fraction=int(interp_fraction),
                                max_gamma=float(max_gamma), local_gamma=bool(local),
                                global_normalisation=float(reference.max()))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        valid = ~np.isnan(gamma)
        out["results"].append({
            "evaluated_points": int(valid.sum()),
            "pass_rate_percent": float(100.0 * np.count_nonzero(gamma[valid] <= 1) / valid.sum()),
            "cpu_s": cpu, "wall_s": wall,
        })
        maps[f"gamma_{i}"] = gamma.astype(np.float32)
    if output_path:
        np.savez_compressed(output_path, **maps)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
