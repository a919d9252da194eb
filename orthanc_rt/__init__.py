"""Orthanc-RT's plain-Python core, grouped by domain; the plugin (`plugin/`) and the workers (`worker/`) build on it.

- `dicom`: one module per RT object family (CT, RTSTRUCT, RT Ion Plan, RT Plan, RTDOSE, SR), reading and building
- `records`: the database (tables, migrations) and the stores of jobs, plans, measurements and the audit trail
- `pacs`: Orthanc's REST API as a client, resource lookups, a job's inputs
- `scheduling`: the job kinds, job parameters, the queues, the scheduler, reconcile
- `planning`: plan requests, workflows, automatic planning rules
- `analysis`: DVHs and dose-volume metrics
- `rendering`: dose overlays and DVH plots
- `ops`: the launcher's commands, the process stack, the demo, the viewer server
- `errors`: what callers catch; `settings`: the one configuration reader

Nothing here imports `orthanc` (the plugin's embedded module) or OpenTPS, so both sides, and the tests, can
import it (import-linter checks this: the contracts in `pyproject.toml`).
"""

__version__ = "0.1.0"

__all__ = ["analysis", "dicom", "errors", "ops", "pacs", "planning", "records", "rendering", "scheduling",
           "settings"]
