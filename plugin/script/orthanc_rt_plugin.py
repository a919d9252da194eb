"""Script that Orthanc's Python plugin runs (configuration key "PythonScript").

It sits alone in its folder because Orthanc puts that folder first on sys.path:
sibling modules would shadow library modules of the same name.

Orthanc must be started with PYTHONPATH holding the project folder and the
virtualenv's site-packages; the launcher (`./orthanc-rt`) does that.
"""
import orthanc  # the module Orthanc's Python plugin provides

from plugin.glue import install

install(orthanc)
