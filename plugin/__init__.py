"""The Orthanc side of Orthanc-RT: glue between Orthanc's Python plugin and the orthanc_rt library.

`script/orthanc_rt_plugin.py` is the script Orthanc runs; `glue.py` alone
touches the `orthanc` module (passed in) and registers one REST callback and
one change callback. Everything else is plain Python, tested without Orthanc:
`router.py` (routes, path parameters, the exception -> HTTP status table),
`routes/` (one module per /rt/ resource), `context.py` (what routes share),
`rest.py` (request and response values), `roles.py` (who may do what),
`openapi.py` (the API description), `events.py` (which change reaches which
trigger of orthanc_rt.scheduling.triggers) and `maintenance.py` (the
background thread).
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["context", "events", "glue", "maintenance", "openapi", "rest", "roles", "router", "routes"]
