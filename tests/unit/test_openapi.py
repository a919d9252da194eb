"""/rt/openapi.json describes exactly the registered routes."""
from __future__ import annotations

from plugin import openapi
from plugin.router import PARAM_PATTERNS
from tests.support.routes import SAMPLES, make_router


def _described() -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in openapi.spec("test")["paths"].items() for m in ops}


def test_every_route_is_described_and_nothing_else():
    assert _described() == set(SAMPLES)


def test_routes_registered_match_the_description(tmp_path):
    from orthanc_rt.records.jobs import JobStore
    from orthanc_rt.settings import Settings

    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"  # the route table needs no Orthanc, Redis or tables
    api = make_router(None, Settings(database_url=url), JobStore(url), None)
    assert {(r.method, r.template) for r in api.routes} == _described()


def test_path_parameter_patterns_agree():
    spec = openapi.spec("test")
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for p in op["parameters"]:
                if p["in"] == "path":
                    assert p["schema"]["pattern"] == f"^{PARAM_PATTERNS[p['name']]}$"
                    assert "{" + p["name"] + "}" in path


def test_every_operation_documents_auth_errors():
    for ops in openapi.spec("test")["paths"].values():
        for op in ops.values():
            assert {"401", "403", "200"} <= set(op["responses"])
