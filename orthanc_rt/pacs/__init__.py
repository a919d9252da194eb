"""Orthanc as the rest of the code sees it: the REST client, resource lookups, a job's inputs.

The plugin passes an in-process client, workers and tests an HTTP one (`client.OrthancApi`).
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["client", "inputs", "resources", "structure_sets"]
