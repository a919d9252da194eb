"""Beamlets by MCsquare in the job's folder, read by our numpy reader exactly as OpenTPS' reader reads them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from opentps.core.io import mcsquareIO
from opentps.core.utils.programSettings import ProgramSettings

from tests.support.cases import small_phantom_case
from tests.support.opentps_plans import designed_plan
from worker.engines.beamlets import compute_beamlets, read_sparse_beamlets
from worker.engines.proton_dose import (
    GY_PER_EV_PER_G,
    default_beam_model,
    scoring_grid,
    to_opentps_ct,
)


def _tree_state(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")} if folder.exists() else {}


@pytest.mark.physics
def test_beamlets_stay_in_work_dir_and_match_opentps_reader(tmp_path):
    case = small_phantom_case("beamlets", size_mm=(42.0, 120.0, 36.0))
    plan = designed_plan(case, gantry=(0.0,), couch=(0.0,))
    plan.spotMUs = np.linspace(0.5, 2.0, plan.numberOfSpots)  # beamlets are per MU whatever the plan holds
    model = default_beam_model()
    grid = scoring_grid(case.ct_volume, 6.0)
    workspace = Path(ProgramSettings().simulationFolder)
    before = _tree_state(workspace)

    beamlets = compute_beamlets(to_opentps_ct(case.ct_volume), plan, model, grid, primaries=500,
                                work_dir=tmp_path, threads=1)

    assert _tree_state(workspace) == before, "MCsquare wrote into OpenTPS' global workspace"
    header = tmp_path / "Outputs" / "Sparse_Dose.txt"
    assert header.is_file()
    np.testing.assert_allclose(plan.spotMUs, np.linspace(0.5, 2.0, plan.numberOfSpots))  # restored
    matrix = beamlets.toSparseMatrix()
    assert matrix.shape == (int(np.prod(grid.size_xyz)), plan.numberOfSpots)
    assert tuple(beamlets.doseGridSize) == grid.size_xyz

    ours = read_sparse_beamlets(header)
    per_mu = [model.protons_per_mu(layer.nominalEnergy) * GY_PER_EV_PER_G
              for beam in plan for layer in beam for _ in range(len(layer.spotMUs))]
    theirs = mcsquareIO.readBeamlets(str(header), per_mu, grid.origin_mm).toSparseMatrix()
    scaled = ours @ sp.diags(np.asarray(per_mu, dtype=np.float32))
    assert abs(scaled - theirs).max() <= 1e-6 * abs(theirs).max()
    assert (matrix != scaled.astype(np.float32)).nnz == 0


def test_beamlet_progress_is_the_share_of_spots_started():
    from worker.engines.mcsquare import progress_from_log

    log = "Simulation of beamlet 1/4  \nSimulation of beamlet 3/4  \nSimulation of beamlet 2/4  \n"
    assert progress_from_log(log) == pytest.approx(0.75)
    assert progress_from_log("Reading CT\n") is None
    # MCsquare's output reaches the log in blocks, so the log can end inside a line: "6945" cut to "69" once made a
    # 7,000-spot plan's beamlets read 100 % after a minute of their three.
    partial = "".join(f"Simulation of beamlet {k}/6945  \n" for k in range(1, 3001)) + "Simulation of beamlet 3001/69"
    assert progress_from_log(partial) == pytest.approx(3000 / 6945)
