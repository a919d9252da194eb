"""Lookups of DICOM resources in Orthanc, shared by the plugin and the workers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orthanc_rt.errors import NotFound, OrthancError
from orthanc_rt.pacs.client import OrthancApi, get_json, post_json

# Orthanc's resource ids: a SHA-1 in five dashed groups. A value used in a REST path must be one: a request's
# "x-/../../system" would otherwise reach another route of Orthanc's API.
ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")


@dataclass(frozen=True)
class InstanceRef:
    """An instance in Orthanc (plan, dose, structure set, SR) as the plugin sees it on arrival or request."""

    orthanc_id: str
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    orthanc_study_id: str


def sop_class_of(api: OrthancApi, instance_id: str) -> str:
    """Cheap: read from Orthanc's index, not from the file."""
    return api.get_bytes(f"/instances/{instance_id}/metadata/SopClassUid").decode().strip()


def known_sop_class(api: OrthancApi, instance_id: str) -> str:
    """`sop_class_of` for an instance a request names: NotFound when Orthanc has no such instance."""
    try:
        return sop_class_of(api, instance_id)
    except OrthancError as exc:
        if exc.status == 404:
            raise NotFound(f"no instance {instance_id} in Orthanc") from None
        raise


def study_uid(api: OrthancApi, study: str) -> str:
    """A StudyInstanceUID as given, or the UID of an Orthanc study id (NotFound when Orthanc has none)."""
    return _uid_of(api, study, "studies", "study", "StudyInstanceUID")


def instance_uid(api: OrthancApi, instance: str) -> str:
    """A SOPInstanceUID as given, or the UID of an Orthanc instance id (NotFound when Orthanc has none)."""
    return _uid_of(api, instance, "instances", "instance", "SOPInstanceUID")


def _uid_of(api: OrthancApi, value: str, level: str, noun: str, tag: str) -> str:
    if "-" not in value:  # DICOM UIDs are digits and dots; Orthanc ids are dashed hex
        return value
    if not ORTHANC_ID.fullmatch(value):
        raise NotFound(f"no {noun} {value[:80]!r} in Orthanc (neither a DICOM UID nor an Orthanc id)")
    try:
        return get_json(api, f"/{level}/{value}")["MainDicomTags"][tag]
    except OrthancError as exc:
        if exc.status == 404:
            raise NotFound(f"no {noun} {value} in Orthanc") from None
        raise


def instance_ref(api: OrthancApi, instance_id: str) -> InstanceRef:
    instance = get_json(api, f"/instances/{instance_id}")
    series = get_json(api, f"/series/{instance['ParentSeries']}")
    study = get_json(api, f"/studies/{series['ParentStudy']}")
    return InstanceRef(
        orthanc_id=instance_id,
        sop_instance_uid=instance["MainDicomTags"].get("SOPInstanceUID", ""),
        sop_class_uid=sop_class_of(api, instance_id),
        series_instance_uid=series["MainDicomTags"].get("SeriesInstanceUID", ""),
        study_instance_uid=study["MainDicomTags"].get("StudyInstanceUID", ""),
        orthanc_study_id=study["ID"],
    )


_FRAME_OF_REFERENCE = "0020,0052"
# An RTSTRUCT has no FrameOfReferenceUID of its own: its ReferencedFrameOfReferenceSequence names it.
_STRUCTURE_SET_FRAME = "3006,0010/0/0020,0052"


def frame_of_reference_of(api: OrthancApi, instance_id: str, modality: str) -> str | None:
    """The instance's FrameOfReferenceUID, read tag by tag (no file download)."""
    return instance_tag(api, instance_id, _STRUCTURE_SET_FRAME if modality == "RTSTRUCT" else _FRAME_OF_REFERENCE)


def find_instances(api: OrthancApi, modality: str, **query: str) -> list[str]:
    """Orthanc ids of the instances of `modality` matching `query` (e.g. StudyInstanceUID=...)."""
    return post_json(api, "/tools/find", {"Level": "Instance", "Query": {"Modality": modality, **query}})


def find_instance(api: OrthancApi, sop_instance_uid: str) -> str | None:
    found = post_json(api, "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}})
    return found[0] if found else None


def find_study(api: OrthancApi, study_instance_uid: str) -> str | None:
    found = post_json(api, "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_instance_uid}})
    return found[0] if found else None


def study_series(api: OrthancApi, orthanc_study_id: str) -> list[dict[str, Any]]:
    return get_json(api, f"/studies/{orthanc_study_id}/series")


def instance_tag(api: OrthancApi, instance_id: str, tag: str) -> str | None:
    """One tag's string value (e.g. "0020,0052"), None when absent."""
    try:
        raw = api.get_bytes(f"/instances/{instance_id}/content/{tag.replace(',', '-')}")
    except OrthancError as exc:
        if exc.status == 404:
            return None
        raise
    return raw.decode(errors="replace").strip("\x00 ")


_REFERENCED_PLAN = "300c,0002/0/0008,1155"  # ReferencedRTPlanSequence[0] / ReferencedSOPInstanceUID


def referenced_plan_uid(api: OrthancApi, instance_id: str) -> str | None:
    """The SOP Instance UID of the plan an RTDOSE references (its first ReferencedRTPlanSequence item)."""
    return instance_tag(api, instance_id, _REFERENCED_PLAN)


@dataclass(frozen=True)
class Uploader:
    """Who stored an instance, from the metadata Orthanc records on arrival."""

    origin: str  # REST, DICOM (C-STORE), PLUGIN (STOW-RS or another plugin), another word of Orthanc's, or ""
    user: str = ""  # REST: the HTTP user ("" with authentication off)
    calling_ae_title: str = ""  # DICOM
    ip: str = ""  # DICOM

    def __str__(self) -> str:
        if self.origin == REST:
            return f"REST upload by {self.user}" if self.user else "REST upload (no user: authentication off)"
        if self.origin == DICOM:
            return f"C-STORE from {self.calling_ae_title or '?'} ({self.ip or '?'})"
        if self.origin == PLUGIN:
            return "STOW-RS or another plugin"
        return self.origin.lower()


REST, DICOM, PLUGIN = "REST", "DICOM", "PLUGIN"
_ORIGINS = {"RestApi": REST, "DicomProtocol": DICOM, "Plugins": PLUGIN}


def stored_by(api: OrthancApi, instance_id: str) -> Uploader:
    """Who stored an instance (Orthanc's Origin, HttpUsername, RemoteAET and RemoteIP metadata)."""
    def metadata(name: str) -> str:
        try:
            return api.get_bytes(f"/instances/{instance_id}/metadata/{name}").decode(errors="replace").strip()
        except OrthancError as exc:
            if exc.status == 404:
                return ""
            raise

    origin = metadata("Origin")
    kind = _ORIGINS.get(origin, origin)
    if kind == REST:
        return Uploader(REST, user=metadata("HttpUsername"))
    if kind == DICOM:
        return Uploader(DICOM, calling_ae_title=metadata("RemoteAET"), ip=metadata("RemoteIP"))
    return Uploader(kind)


def exists(api: OrthancApi, path: str) -> bool:
    try:
        api.get_bytes(path)
        return True
    except OrthancError as exc:
        if exc.status == 404:
            return False
        raise

