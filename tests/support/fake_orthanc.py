"""An in-memory Orthanc behind the OrthancApi interface (orthanc_rt.pacs.client), for the trigger rules' tests.

It answers the REST calls the triggers and the lookups they use make
(orthanc_rt.pacs.resources, orthanc_rt.pacs.structure_sets), from real pydicom
datasets stored as Part 10 bytes, as Orthanc 1.10 answers them: resource ids
hashed from the DICOM identifiers as Orthanc does, the same JSON fields,
an OrthancError with status 404 for what it does not hold.
tests/integration/test_fake_orthanc.py checks those answers against the real
Orthanc; a call it does not know fails loudly instead of guessing.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.errors import OrthancError

# The main DICOM tags Orthanc keeps per level, as far as our test data carry them (a subset of Orthanc's).
_MAIN_TAGS = {
    "patients": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "studies": ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber"),
    "series": ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime"),
    "instances": ("SOPInstanceUID", "InstanceNumber"),
}
_LEVELS = ("patients", "studies", "series", "instances")
_PARENT_KEY = {"studies": "ParentPatient", "series": "ParentStudy", "instances": "ParentSeries"}
_CHILDREN_KEY = {"patients": "Studies", "studies": "Series", "series": "Instances"}
_TYPE = {"patients": "Patient", "studies": "Study", "series": "Series", "instances": "Instance"}
_FIND_LEVEL = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


def orthanc_id(*identifiers: str) -> str:
    """Orthanc's resource id: the SHA-1 of the identifiers joined by "|", in five groups of eight hex digits."""
    digest = hashlib.sha1("|".join(identifiers).encode()).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


@dataclass
class _Resource:
    level: str
    id: str
    parent: str | None
    dataset: Dataset  # the first instance stored below it: Orthanc takes a level's main tags from that
    children: list[str] = field(default_factory=list)


class FakeOrthanc:
    """OrthancApi over a dict of resources; `store(ds)` is POST /instances."""

    def __init__(self, datasets: Iterable[Dataset] = ()):
        self.resources: dict[str, _Resource] = {}
        self.files: dict[str, bytes] = {}
        self.arriving: set[str] = set()  # Orthanc ids of series still arriving (IsStable false)
        self.metadata: dict[str, dict[str, str]] = {}  # instance id -> what Orthanc records on arrival
        for ds in datasets:
            self.store(ds)

    # -- OrthancApi -------------------------------------------------------
    def get_bytes(self, path: str) -> bytes:
        parts = path.strip("/").split("/")
        level, rid, rest = parts[0], parts[1] if len(parts) > 1 else "", parts[2:]
        resource = self._resource(level, rid, path)
        if not rest:
            return _json(self._describe(resource))
        if level == "instances" and rest == ["file"]:
            return self.files[rid]
        if level == "instances" and rest == ["metadata", "SopClassUid"]:
            return str(resource.dataset.SOPClassUID).encode()
        if level == "instances" and len(rest) == 2 and rest[0] == "metadata":
            if rest[1] not in self.metadata.get(rid, {}):
                raise OrthancError(f"Orthanc GET {path} -> HTTP 404: Unknown resource", status=404)
            return self.metadata[rid][rest[1]].encode()
        if level == "instances" and rest[0] == "content" and len(rest) > 1:
            return self._content(resource.dataset, rest[1:], path)
        if level == "instances" and rest == ["study"]:
            return _json(self._describe(self._ancestor(resource, "studies")))
        if level in _CHILDREN_KEY and rest == [_CHILDREN_KEY[level].lower()]:  # e.g. /studies/{id}/series
            return _json([self._describe(self.resources[c]) for c in resource.children])
        raise NotImplementedError(f"FakeOrthanc: GET {path}")

    def post_bytes(self, path: str, body: bytes, content_type: str = "application/json") -> bytes:
        if path == "/instances":
            return _json(self.store(pydicom.dcmread(io.BytesIO(body))))
        if path == "/tools/find":
            return _json(self._find(json.loads(body)))
        raise NotImplementedError(f"FakeOrthanc: POST {path}")

    def delete(self, path: str) -> None:
        level, _, rid = path.strip("/").partition("/")
        resource = self._resource(level, rid, path)
        if level != "instances":
            raise NotImplementedError(f"FakeOrthanc: DELETE {path}")
        self._remove(resource)

    # -- storing ----------------------------------------------------------
    def store(self, ds: Dataset, *, origin: dict[str, str] | None = None) -> dict[str, Any]:
        """Store a dataset as Orthanc does (parsed back from its Part 10 bytes); Orthanc's answer. `origin`: the
        metadata Orthanc records about the sender (default: a REST upload with authentication off)."""
        data = to_bytes(ds)
        ds = pydicom.dcmread(io.BytesIO(data))
        keys = [str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
        parent = None
        for depth, level in enumerate(_LEVELS):
            rid = orthanc_id(*keys[:depth + 1])
            if rid not in self.resources:
                self.resources[rid] = _Resource(level, rid, parent, ds)
                if parent is not None:
                    self.resources[parent].children.append(rid)
            parent = rid
        self.files[parent] = data
        self.metadata[parent] = dict(origin if origin is not None else {"Origin": "RestApi"})
        instance = self.resources[parent]
        series = self.resources[instance.parent]
        study = self.resources[series.parent]
        return {"ID": instance.id, "ParentSeries": series.id, "ParentStudy": study.id,
                "ParentPatient": study.parent, "Path": f"/instances/{instance.id}", "Status": "Success"}

    def _remove(self, resource: _Resource) -> None:
        del self.resources[resource.id]
        self.files.pop(resource.id, None)
        if resource.parent is not None:
            parent = self.resources[resource.parent]
            parent.children.remove(resource.id)
            if not parent.children:  # Orthanc removes a parent left empty
                self._remove(parent)

    # -- answers ----------------------------------------------------------
    def _resource(self, level: str, rid: str, path: str) -> _Resource:
        resource = self.resources.get(rid)
        if level not in _LEVELS or resource is None or resource.level != level:
            raise OrthancError(f"Orthanc GET {path} -> HTTP 404: Unknown resource", status=404)
        return resource

    def _ancestor(self, resource: _Resource, level: str) -> _Resource:
        while resource.level != level:
            resource = self.resources[resource.parent]
        return resource

    def _describe(self, resource: _Resource) -> dict[str, Any]:
        answer: dict[str, Any] = {"ID": resource.id, "Type": _TYPE[resource.level],
                                  "MainDicomTags": _main_tags(resource.dataset, resource.level)}
        if resource.level in _PARENT_KEY:
            answer[_PARENT_KEY[resource.level]] = resource.parent
        if resource.level in _CHILDREN_KEY:
            answer[_CHILDREN_KEY[resource.level]] = list(resource.children)
        if resource.level == "studies":
            answer["PatientMainDicomTags"] = _main_tags(resource.dataset, "patients")
        if resource.level == "series" and resource.id in self.arriving:
            # Only then: whether a real series is stable yet depends on timing, which the comparison with the
            # real Orthanc (tests/integration/test_fake_orthanc.py) cannot pin down.
            answer["IsStable"] = False
        return answer

    def _content(self, ds: Dataset, steps: list[str], path: str) -> bytes:
        """/instances/{id}/content/gggg-eeee[/index/gggg-eeee...]: a string element's value."""
        value: Any = ds
        for i, step in enumerate(steps):
            if i % 2:
                index = int(step)
                if index >= len(value):
                    raise OrthancError(f"Orthanc GET {path} -> HTTP 404: Inexistent item", status=404)
                value = value[index]
                continue
            tag = int(step.replace("-", ""), 16)
            if tag not in value:
                raise OrthancError(f"Orthanc GET {path} -> HTTP 404: Inexistent tag", status=404)
            value = value[tag].value
        if isinstance(value, DicomSequence):
            raise NotImplementedError(f"FakeOrthanc: content of a sequence ({path})")
        return _raw(value).encode()

    def _find(self, query: dict[str, Any]) -> list[str]:
        """/tools/find with exact matches (no wildcards, no Expand): ids at `Level`, in the order stored."""
        level = _FIND_LEVEL[query["Level"]]
        found: list[str] = []
        for rid in self.files:
            ds = self.resources[rid].dataset
            if all(_raw(ds.get(key, "")) == str(wanted) for key, wanted in query.get("Query", {}).items()):
                target = self._ancestor(self.resources[rid], level).id
                if target not in found:
                    found.append(target)
        return found


def _main_tags(ds: Dataset, level: str) -> dict[str, str]:
    return {name: _raw(ds.get(name)) for name in _MAIN_TAGS[level] if name in ds}


def _raw(value: Any) -> str:
    """A value as Orthanc shows a string element: multiple values joined by backslashes."""
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
