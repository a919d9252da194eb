"""The dose engines the jobs run: MCsquare (doses, beamlets, their fan-out over workers) and OpenTPS' CCC.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["beamlet_fanout", "beamlet_parts", "beamlets", "ccc", "child_process", "mcsquare", "plan_convert",
           "proton_dose"]
