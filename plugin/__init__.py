"""The Orthanc-side of Orthanc-RT.

`orthanc_rt_plugin.py` is the script Orthanc runs (it alone imports the
`orthanc` module, through `glue.py`); `api.py` (REST routes) and `events.py`
(reactions to arriving DICOM) are plain Python, testable without Orthanc.
"""
