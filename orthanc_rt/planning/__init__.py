"""Plan requests: workflows and their parameters, validation, automatic planning rules.

Plain Python (the plugin validates with it); `orthanc_rt.scheduling.submission` turns a request into a
recorded plan and its job, and the planning itself runs in `worker.planning`.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["auto_rules", "ccc_engine", "goals", "protocols", "request", "workflows"]
