"""OpenTPS plans for engine tests: spots placed on a phantom's target the way the planner does."""
from __future__ import annotations

import numpy as np
from opentps.core.data.images import ROIMask
from opentps.core.data.plan._protonPlanDesign import ProtonPlanDesign

from worker.engines.proton_dose import default_beam_model, to_opentps_ct


def designed_plan(case, gantry=(0.0, 90.0), couch=(0.0, 10.0), spacing_mm: float = 6.0):
    """Spots placed by OpenTPS on the phantom's target (no Monte Carlo), as the planner does; `spacing_mm`
    between spots and between layers."""
    ct = case.ct_volume
    design = ProtonPlanDesign()
    design.ct = to_opentps_ct(ct)
    design.calibration = default_beam_model().calibration
    design.gantryAngles, design.couchAngles = list(gantry), list(couch)
    design.beamNames = [f"B{k + 1}" for k in range(len(gantry))]
    design.spotSpacing = design.layerSpacing = float(spacing_mm)
    design.targetMargin = 3.0
    target = ROIMask(imageArray=np.ascontiguousarray(case.target_mask.transpose(2, 1, 0)), name="TargetVolume",
                     origin=ct.origin_mm, spacing=ct.spacing_mm)
    design.defineTargetMaskAndPrescription(target=target, targetPrescription=2.0)
    return design.buildPlan()
