"""schemathesis against the live plugin (production configuration, admin credentials so every route
is reached): no generated request, valid or not, gets a server error. Bounded in count and time."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.support.stack import AUTH_USERS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def rt_openapi(auth_stack):
    r = requests.get(f"{auth_stack.orthanc_url}/rt/openapi.json", auth=("ada", AUTH_USERS["ada"][0]), timeout=30)
    r.raise_for_status()
    return schemathesis.openapi.from_dict(r.json())


schema = schemathesis.pytest.from_fixture("rt_openapi")


@schema.parametrize()
@settings(max_examples=25, deadline=10_000, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, auth_stack):
    session = requests.Session()
    session.auth = ("ada", AUTH_USERS["ada"][0])
    case.call_and_validate(base_url=auth_stack.orthanc_url, session=session, checks=[not_a_server_error],
                           timeout=30)
