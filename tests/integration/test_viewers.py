"""OHIF, served next to Orthanc, shows the dose Orthanc-RT computed: a real headless Chromium.

Evidence is taken from the network (DICOMweb answers for the CT, RTSTRUCT and
RTDOSE series through the viewer's origin) and the DOM (series list, the
structure set's ROI names in the segmentation panel, the dose series in the
viewport overlay); screenshots go to test-artifacts/ for a person to look at.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from orthanc_rt.viewer import ohif_dist
from tests import util
from tests.integration.senders import rest_upload

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# Flags for a closed network and a root user (see the machine notes): no sandbox, no background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not (ohif_dist() / "index.html").is_file():
        pytest.fail("Chromium or the OHIF viewer is missing: run ./orthanc-rt install --dev")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_ohif_shows_ct_structures_and_our_dose(orthanc, rt_stack, browser):
    case = util.small_phantom_case("ohif")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                           kind="dose")
    assert job["state"] == "succeeded", job["message"]
    study_uid = case.study.study_instance_uid
    viewer = f"http://127.0.0.1:{rt_stack.viewer_port}"
    ARTIFACTS.mkdir(exist_ok=True)

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    responses: list[tuple[int, str]] = []
    errors: list[str] = []
    page.on("response", lambda r: responses.append((r.status, r.url)))
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{viewer}/?mrn={case.study.patient_id}", wait_until="networkidle")  # the list, filtered by MRN
    page.get_by_text(case.study.patient_id).first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "ohif-study-list.png"))

    page.goto(f"{viewer}/viewer?StudyInstanceUIDs={study_uid}", wait_until="networkidle")
    for modality in ("RTDOSE", "RTSTRUCT", "RTPLAN"):
        page.get_by_text(modality, exact=True).first.wait_for(timeout=30_000)
    _dismiss_tour(page)

    page.get_by_text("RTSTRUCT", exact=True).first.dblclick()
    page.get_by_role("button", name="Yes").click(timeout=30_000)
    page.locator("[data-cy=panelSegmentation-btn]").first.click()  # the structure set's ROI list
    page.get_by_text("TargetVolume").first.wait_for(timeout=30_000)
    page.get_by_text("External").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "ohif-rtstruct.png"))

    page.get_by_text("RTDOSE", exact=True).first.dblclick()
    page.get_by_text("MCsquare dose").last.wait_for(timeout=30_000)
    time.sleep(2)  # let the dose frames arrive before the screenshot
    page.screenshot(path=str(ARTIFACTS / "ohif-rtdose.png"))

    series = {uid: str(ds.SeriesInstanceUID) for uid, ds in (("ct", case.ct[0]), ("rtstruct", case.rtstruct))}
    dose_series = job["outputs"]["rtdose"]["series_instance_uid"]
    ok = [url for status, url in responses if status == 200 and "/dicom-web/" in url]
    assert any(f"/series/{series['ct']}/instances/" in u and "/frames/" in u for u in ok), "no CT frame loaded"
    assert any(f"/series/{series['rtstruct']}/metadata" in u for u in ok), "RTSTRUCT metadata not loaded"
    assert any(f"/series/{dose_series}/" in u and "/frames/" in u for u in ok), "no RTDOSE frame loaded"
    assert not [u for status, u in responses if status >= 500], "server errors behind the viewer"
    assert not errors, f"page errors: {errors[:3]}"


def _dismiss_tour(page) -> None:
    """OHIF greets first-time users with a guided tour that covers the viewport."""
    skip = page.get_by_text("Skip all")
    if skip.count():
        skip.first.click()


def test_orthanc_explorer_shows_jobs_and_computes_a_dose(orthanc, rt_stack, browser):
    case = util.small_phantom_case("explorer")
    ids = rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    job = orthanc.wait_job(lambda j: j["state"] == "succeeded", study=case.study.study_instance_uid, kind="dose")
    orthanc.wait_job(lambda j: j["state"] == "succeeded", study=case.study.study_instance_uid, kind="analysis")
    study_id = job["orthanc_study_id"]
    page = browser.new_page(viewport={"width": 1200, "height": 900})

    page.goto(f"{orthanc.base}/app/explorer.html#study?uuid={study_id}")
    panel = page.locator("#orthanc-rt-study")
    panel.get_by_text("Orthanc-RT jobs (2)").wait_for(timeout=30_000)  # the dose and its DVH analysis
    panel.get_by_text("dose succeeded").wait_for()
    panel.get_by_text("analysis succeeded").wait_for()
    assert panel.locator("a", has_text="RTDOSE").get_attribute("href") == \
        f"#instance?uuid={job['outputs']['rtdose']['orthanc_id']}"
    ohif = page.locator("#orthanc-rt-ohif")
    ohif.wait_for()
    assert ohif.get_attribute("href") == (f"http://127.0.0.1:{rt_stack.viewer_port}/viewer?StudyInstanceUIDs="
                                          f"{case.study.study_instance_uid}")
    page.screenshot(path=str(ARTIFACTS / "explorer-study.png"))

    page.goto(f"{orthanc.base}/app/explorer.html#instance?uuid={ids[-1]}")
    page.locator("#orthanc-rt-primaries").fill("30000")
    page.locator("#orthanc-rt-dose").click()
    page.get_by_text("Job queued:").wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "explorer-plan.png"))
    requested = [j for j in orthanc.jobs(study=case.study.study_instance_uid) if j["params"].get("primaries") == 30000]
    assert len(requested) == 1 and requested[0]["source"] == "api"

    # The RTDOSE's page: overlay image, DVH plot and the per-ROI metrics table. (A fresh page: jQuery
    # Mobile does not rebuild a page whose hash alone changes.)
    page = browser.new_page(viewport={"width": 1200, "height": 1800})
    page.goto(f"{orthanc.base}/app/explorer.html#instance?uuid={job['outputs']['rtdose']['orthanc_id']}")
    page.locator("#orthanc-rt-metrics").get_by_text("TargetVolume").wait_for(timeout=30_000)
    for image in ("#orthanc-rt-overlay", "#orthanc-rt-dvh"):
        page.wait_for_function(f"document.querySelector('{image}') && "
                               f"document.querySelector('{image}').naturalWidth > 0", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "explorer-dose.png"), full_page=True)
