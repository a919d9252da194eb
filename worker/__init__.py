"""The workers: RQ entry points and the OpenTPS/MCsquare work they run (`python -m worker` starts one).

- `tasks`: every function RQ calls (`run_job`, `run_part`, `on_failure`), by paths RQ stores with its jobs
- `jobs`: one module per job kind (`run(job_id, settings, store)`, named by orthanc_rt.scheduling.kinds) and
  the frame every job runs in
- `engines`: the dose engines (MCsquare, its beamlets and their fan-out over workers, OpenTPS' CCC)
- `planning`: treatment planning on OpenTPS (proton IMPT, photon IMRT)
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["engines", "jobs", "planning", "tasks"]
