"""From a trigger or a request to a job on a queue: the job kinds, job parameters, RQ queues, the scheduler,
reconcile, plan submission (a plan request becomes a plan record and its job) and the trigger rules (which
arriving DICOM becomes which job).

A job is first written to the database, then pushed to Redis; what Redis missed is pushed again.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["kinds", "origin", "params", "queue", "reconcile", "scheduler", "submission", "triggers"]
