"""Placeholder until the photon-ccc branch lands (replaced by its module at merge)."""


def status() -> dict:
    return {"available": False, "reason": "the photon-ccc workflow is not wired to Orthanc-RT's plan jobs yet"}
