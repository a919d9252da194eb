"""Orthanc Explorer's plan panel in a real headless Chromium: request a plan, watch it, open its results.

Cost: one 1-beam plan on the small phantom with the workflow's default
primaries (1000 per spot, 1e6 final; 5000 when this was measured), 30-60 s on the 2-core machine.
"""
from __future__ import annotations

import time

import pytest

from tests.support import cases as util
from tests.support.browser import artifact
from tests.support.senders import rest_upload

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_a_plan_requested_in_explorer_is_listed_with_its_results(orthanc, rt_stack, browser):
    case = util.small_phantom_case("explorer-plan")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct])
    time.sleep(rt_stack.stable_age_s + 1)
    study_id = orthanc.post("/tools/lookup", data=case.study.study_instance_uid).json()[0]["ID"]
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    page.goto(f"{orthanc.base}/app/explorer.html#study?uuid={study_id}")
    empty = page.locator("#orthanc-rt-plans").get_by_text("Orthanc-RT has planned nothing in this study.", exact=False)
    empty.wait_for(timeout=30_000)
    form = page.locator("#orthanc-rt-plan-form")
    form.wait_for()
    page.wait_for_function("document.querySelectorAll('#orthanc-rt-target option').length >= 2", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#orthanc-rt-workflow option').length >= 2", timeout=30_000)
    targets = page.locator("#orthanc-rt-target option").all_inner_texts()
    assert any(t.startswith("TargetVolume") for t in targets) and any(t.startswith("External") for t in targets)
    workflows = page.locator("#orthanc-rt-workflow option").all_inner_texts()
    assert "Proton IMPT" in workflows and "Robust proton IMPT" in workflows
    target_value = next(v for v in page.locator("#orthanc-rt-target option").evaluate_all(
        "options => options.map(o => o.value)") if "TargetVolume" in v)
    page.select_option("#orthanc-rt-target", target_value)
    page.locator("#orthanc-rt-beams").fill("1")
    page.locator("#orthanc-rt-plan").click()
    form.get_by_text("Plan requested:").wait_for(timeout=30_000)

    [plan] = orthanc.get("/rt/plans", params={"study": study_id}).json()["items"]
    assert plan["request"]["beam_count"] == 1 and plan["target_roi"] == "TargetVolume"
    assert plan["workflow"] == "proton-impt" and plan["source"] == "api"
    deadline = time.monotonic() + 600
    while plan["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(2)
        plan = orthanc.get(f"/rt/plans/{plan['id']}").json()
    assert plan["status"] == "succeeded", plan["job"]
    row = page.locator(f"[data-rt-plan='{plan['id']}']")
    row.get_by_text("succeeded").wait_for(timeout=30_000)  # the list refreshes itself while the plan runs
    assert row.locator("a", has_text="RTPLAN").get_attribute("href") == \
        f"#instance?uuid={plan['results']['rtplan']['orthanc_id']}"
    assert row.locator("a", has_text="RTDOSE").count() == 1 and "D95" in row.inner_text()
    page.locator("#orthanc-rt-study").get_by_text("plan succeeded").wait_for(timeout=30_000)  # the job, live
    page.screenshot(path=str(artifact("explorer-plan-request.png")), full_page=True)
