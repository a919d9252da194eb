"""Orthanc-RT core: what the Orthanc plugin and the RQ workers both need.

Nothing in this package imports `orthanc` (the plugin's embedded module) or
OpenTPS, so both sides, and the tests, can import it.
"""

__version__ = "0.1.0"
