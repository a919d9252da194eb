"""OHIF, served next to Orthanc, shows the dose Orthanc-RT computed: a real headless Chromium.

Evidence is taken from the network (DICOMweb answers for the CT, RTSTRUCT and
RTDOSE series through the viewer's origin), the DOM (series list, the
structure set's ROI names in the segmentation panel), the pixels on the screen
(the dose's colours over the CT's grey, none in the air, the contours) and
cornerstone's own state of the viewport (the dose's colour map and range in
Gy); screenshots go to test-artifacts/ for a person to look at.
A length drawn with the mouse in OHIF and saved as a report travels by STOW-RS
into Orthanc and from there into the measurement records; with Orthanc's
authentication on, the viewer gives nothing to a browser without a login.
"""
from __future__ import annotations

import io
import re
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image

from orthanc_rt.dicom.parametric_map import read_let_map
from orthanc_rt.dicom.serialize import from_bytes
from orthanc_rt.ops.viewer import CONFIG
from tests.support import cases as util
from tests.support.browser import artifact
from tests.support.senders import rest_upload, stow_rs_response
from tests.support.stack import AUTH_USERS, WORKER_USER, as_user, succeeded_dose_job

pytestmark = [pytest.mark.integration, pytest.mark.browser]





def _ohif_page(browser_or_context, **kw):
    """A page as a first visit opens it (fresh storage: OHIF would show its guided tour, which our configuration
    turns off; test_ohif_shows_ct_structures_and_our_dose checks that it stays off)."""
    return browser_or_context.new_page(**kw)


def _open_in_ohif(browser, rt_stack, study_uid: str):
    """OHIF's viewer on the study, in a 1400 x 900 page; returns the page and the list its script errors go to."""
    page = _ohif_page(browser, viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{rt_stack.viewer_port}/viewer?StudyInstanceUIDs={study_uid}",
              wait_until="networkidle")
    return page, errors


def test_ohif_shows_ct_structures_and_our_dose(orthanc, rt_stack, browser):
    case = util.small_phantom_case("ohif")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=case.study.study_instance_uid,
                           kind="dose")
    assert job["state"] == "succeeded", job["message"]
    study_uid = case.study.study_instance_uid
    viewer = f"http://127.0.0.1:{rt_stack.viewer_port}"

    page = _ohif_page(browser, viewport={"width": 1400, "height": 900})
    responses: list[tuple[int, str]] = []
    errors: list[str] = []
    page.on("response", lambda r: responses.append((r.status, r.url)))
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{viewer}/?mrn={case.study.patient_id}", wait_until="networkidle")  # the list, filtered by MRN
    page.get_by_text(case.study.patient_id).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifact("ohif-study-list.png")))

    page.goto(f"{viewer}/viewer?StudyInstanceUIDs={study_uid}", wait_until="networkidle")
    for modality in ("RTDOSE", "RTSTRUCT", "RTPLAN"):
        page.get_by_text(modality, exact=True).first.wait_for(timeout=30_000)

    # The study opens with the CT, our dose fused over it and the structure set loaded (no prompt to answer).
    page.locator("[data-cy=panelSegmentation-btn]").first.click()  # the structure set's ROI list
    page.get_by_text("TargetVolume").first.wait_for(timeout=30_000)
    page.get_by_text("External").first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifact("ohif-rtstruct.png")))
    time.sleep(2)  # let the dose frames arrive before the screenshot
    page.screenshot(path=str(artifact("ohif-rtdose.png")))
    # A first visit, the viewport drawn: OHIF's guided tour (Shepherd.js steps over it) is configured away.
    assert page.locator(".shepherd-element").count() == 0, "OHIF's first-visit tour covers the viewer"

    series = {uid: str(ds.SeriesInstanceUID) for uid, ds in (("ct", case.ct[0]), ("rtstruct", case.rtstruct))}
    dose_series = job["outputs"]["rtdose"]["series_instance_uid"]
    ok = [url for status, url in responses if status == 200 and "/dicom-web/" in url]
    assert any(f"/series/{series['ct']}/instances/" in u and "/frames/" in u for u in ok), "no CT frame loaded"
    assert any(f"/series/{series['rtstruct']}/metadata" in u for u in ok), "RTSTRUCT metadata not loaded"
    assert any(f"/series/{dose_series}/" in u and "/frames/" in u for u in ok), "no RTDOSE frame loaded"
    assert not [u for status, u in responses if status >= 500], "server errors behind the viewer"
    assert not errors, f"page errors: {errors[:3]}"


def test_ohif_opens_an_rt_study_with_the_newest_dose_fused_over_the_ct(orthanc, rt_stack, browser):
    """The series list sorts the doses (series 1-4) before the CT (303); OHIF still opens the CT with the newest
    dose of Orthanc-RT (not the older one, nor another system's newer one, nor a dose check's difference) as a
    colour wash, zero dose (air, and where only the other doses lie) uncoloured, and the contours."""
    case = util.fusion_case("ohif-fusion")
    phantom = case.phantom
    rest_upload(orthanc.base, [*phantom.ct, phantom.rtstruct, case.older_rtdose, case.rtdose, case.foreign_rtdose,
                                 case.difference_rtdose])
    page, errors = _open_in_ohif(browser, rt_stack, phantom.study.study_instance_uid)
    canvas = page.locator("[data-cy=viewport-pane] canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    shot = _wait_for_dose_colour_bar(page, box)
    Image.fromarray(shot.astype(np.uint8)).save(artifact("ohif-fusion.png"))
    # The dose's colour bar (OHIF's Isodose map) along the viewport's bottom; its ticks (Gy) show under the mouse.
    bar = shot[int(0.9 * len(shot)):]
    assert ((bar[..., 0] > 200) & (bar[..., 1] < 60)).sum() > 100, "no dose colour bar"
    # Its unit stays beside it, inside the viewport, next to the bar (not somewhere else on the page).
    unit = page.locator("[id^=colorbar-container-orthanc-rt-fusion] [data-orthanc-rt-unit]")
    unit.wait_for(timeout=10_000)
    assert unit.inner_text() == "Gy"
    label, viewport_box = unit.bounding_box(), box
    assert viewport_box["x"] < label["x"] < viewport_box["x"] + viewport_box["width"]
    assert label["y"] > viewport_box["y"] + 0.8 * viewport_box["height"]
    drawn = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=label))).convert("L"))
    assert (drawn > 150).sum() > 10, "the unit label is covered or not drawn"
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 25)
    time.sleep(0.5)
    page.screenshot(path=str(artifact("ohif-fusion-page.png")))
    # The wash and its colour bar span 0 .. the dose's maximum, in Gy (cornerstone's own state of the viewport).
    shown = page.evaluate("""() => {
        const viewport = cornerstone.getRenderingEngines()[0].getViewport('orthanc-rt-fusion');
        return viewport.getActors().map(a => [cornerstone.cache.getVolume(a.referencedId).metadata.Modality,
                                              viewport.getProperties(a.referencedId)]); }""")
    modalities = [modality for modality, _ in shown]
    assert modalities == ["CT", "RTDOSE"], modalities  # the CT underneath, the dose over it
    dose = shown[1][1]
    peak = float(case.rtdose.DoseGridScaling) * int(case.rtdose.pixel_array.max())
    assert dose["colormap"]["name"] == "Isodose"
    assert dose["voiRange"]["lower"] == pytest.approx(0, abs=1e-3)
    assert dose["voiRange"]["upper"] == pytest.approx(peak, rel=1e-3)

    top, bottom, left, right = _water_on_screen(shot)
    at = _screen_patch(shot, top, bottom, left, right)
    cx, cy, _ = phantom.target_center_mm
    assert _coloured(at(cx, cy)), f"no dose colour at the target: {at(cx, cy)}"
    assert _coloured(at(cx + 4, cy - 4)), f"no dose colour inside the target: {at(cx + 4, cy - 4)}"
    hx, hy, _ = case.hot_spot_mm
    older = at(hx, hy)
    assert not _coloured(older) and older.mean() > 60, f"another dose is shown, or the CT is not: {older}"
    water = at(-20.0, 20.0)  # water, no dose: the CT's grey
    assert not _coloured(water) and water.mean() > 60, f"no CT grey in the water: {water}"
    air = shot[max(top - 40, 0):top - 10, left:right].reshape(-1, 3)  # above the water: air, inside the dose grid
    assert air.size and float(air.max()) < 40, "the air is not dark: the dose (zero there) is painted over it"
    # The contours: the External ROI (green, on the water's edge) and the target's (red) are drawn.
    edge = shot[top:bottom + 1, left:right + 1]
    green = (edge[..., 1] > 150) & (edge[..., 0] < 100) & (edge[..., 2] < 100)
    red = (edge[..., 0] > 150) & (edge[..., 1] < 80) & (edge[..., 2] < 80)
    assert green.sum() > 50, "the External contour is not drawn"
    assert red.sum() > 20, "the target's contour is not drawn"
    assert not errors, f"page errors: {errors[:3]}"


def test_ohif_shows_the_let_map_over_the_ct_one_click_from_the_rbe_weighted_dose(orthanc, rt_stack, browser):
    """A dose request with `let` and an RBE model on a stored proton plan (real MCsquare): OHIF fuses the
    RBE-weighted dose, labelled Gy (RBE); one click on the viewport's LETd button puts the LETd Parametric Map in
    the dose's place, in keV/um (its colour bar 0 .. the map's 99th percentile, with its unit), coloured in the beam and
    transparent where the map is 0 (air, beyond the protons' range)."""
    phantom = util.small_phantom_case("ohif-let", size_mm=(60.0, 60.0, 30.0), air_margin_mm=30.0,
                                      target_size_mm=12.0, target_depth_mm=20.0)
    study_uid = phantom.study.study_instance_uid
    rest_upload(orthanc.base, [*phantom.ct, phantom.rtstruct, phantom.plan])
    plan_id = orthanc.post("/tools/find", json={"Level": "Instance", "Query": {
        "SOPInstanceUID": str(phantom.plan.SOPInstanceUID)}}).json()[0]
    answer = orthanc.post(f"/rt/instances/{plan_id}/dose",
                          json={"primaries": 20000, "let": True, "rbe_model": "mcnamara"})
    assert answer.status_code == 200, answer.text
    job = orthanc.wait_final(answer.json()["job"]["id"])
    assert job["state"] == "succeeded", job["message"]
    outputs = job["outputs"]
    let_map = read_let_map(from_bytes(orthanc.get(f"/instances/{outputs['letmap']['orthanc_id']}/file").content))
    # The colour scale's end: the 99th percentile of the map where it is not 0 (the lower of the two values
    # around it, as the viewer takes it).
    let_top = float(np.percentile(let_map.let_kev_um[let_map.let_kev_um > 0], 99, method="lower"))
    assert let_top > 1.0

    page, errors = _open_in_ohif(browser, rt_stack, study_uid)
    canvas = page.locator("[data-cy=viewport-pane] canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    _wait_for_dose_colour_bar(page, box)
    # The fused dose is the job's RBE-weighted one (DoseType EFFECTIVE): its unit is Gy (RBE).
    unit = page.locator("[id^=colorbar-container-orthanc-rt-fusion] [data-orthanc-rt-unit]")
    unit.wait_for(timeout=10_000)
    assert unit.get_attribute("data-orthanc-rt-series") == outputs["rtdose-effective"]["series_instance_uid"]
    assert unit.inner_text() == "Gy (RBE)"
    page.screenshot(path=str(artifact("ohif-rbe-dose.png")))

    toggle = page.locator("[data-orthanc-rt-let-toggle]")
    toggle.wait_for(timeout=10_000)
    toggle.click()
    bar = page.locator("[data-orthanc-rt-let-bar]")
    bar.wait_for(timeout=30_000)
    assert toggle.get_attribute("data-orthanc-rt-let-toggle") == "let"
    assert float(bar.get_attribute("data-orthanc-rt-let-bar")) == pytest.approx(let_top, rel=1e-3)
    assert bar.locator("[data-orthanc-rt-unit]").inner_text() == "keV/µm"
    assert not unit.is_visible(), "the dose's colour bar (and its Gy) stays beside the LET map"
    time.sleep(1.5)  # the rendering
    full = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=float)
    Image.fromarray(full.astype(np.uint8)).save(artifact("ohif-let-map.png"))
    shot = full[int(box["y"]):int(box["y"] + box["height"]), int(box["x"]):int(box["x"] + box["width"])]

    # Cornerstone's own state: the CT, the dose hidden, the LET map on top in keV/um, 0 .. that percentile.
    shown = page.evaluate("""() => {
        const viewport = cornerstone.getRenderingEngines()[0].getViewport('orthanc-rt-fusion');
        const opacity = a => a.actor.getProperty().getScalarOpacity(0);
        return viewport.getActors().map(a => [cornerstone.cache.getVolume(a.referencedId).metadata.Modality,
                                              a.actor.getVisibility(), viewport.getProperties(a.referencedId),
                                              [0, 0.5, 1].map(f => opacity(a).getValue(f * (viewport
                                                .getProperties(a.referencedId).voiRange?.upper || 0)))]); }""")
    assert [(modality, visible) for modality, visible, _, _ in shown] == [("CT", True), ("RTDOSE", False),
                                                                       ("PMAP", True)], shown
    let_shown = shown[2][2]
    assert let_shown["voiRange"]["lower"] == pytest.approx(0, abs=1e-6)
    assert let_shown["voiRange"]["upper"] == pytest.approx(let_top, rel=1e-3)
    at_zero, at_half, at_top = shown[2][3]  # the map's opacity: none where it is 0 (no dose there), else the wash's
    assert at_zero == 0 and at_half == pytest.approx(at_top) and at_top > 0.5, shown[2][3]

    top, bottom, left, right = _water_on_screen(shot)
    at = _screen_patch(shot, top, bottom, left, right)
    cx, cy, _ = phantom.target_center_mm
    assert _coloured(at(cx, cy)), f"no LET colour at the target: {at(cx, cy)}"
    assert _coloured(at(cx, cy - 12)), f"no LET colour in the beam's entrance: {at(cx, cy - 12)}"
    distal = at(cx, cy + 30)  # water 20 mm beyond the target's far edge: no proton gets there, LETd 0
    assert not _coloured(distal) and distal.mean() > 60, f"LET colour beyond the range: {distal}"
    air = shot[max(top - 40, 0):top - 10, left:right].reshape(-1, 3)  # above the water: air
    assert air.size and float(air.max()) < 40, "the air is not dark: the LET map (zero there) is painted over it"

    toggle.click()  # back to the dose
    page.locator("[data-orthanc-rt-let-toggle=dose]").wait_for(timeout=10_000)
    assert unit.is_visible() and not bar.count()
    assert not errors, f"page errors: {errors[:3]}"


def _water_on_screen(shot: np.ndarray) -> tuple[int, int, int, int]:
    """The water's rows and columns on the screen (top, bottom, left, right): the pixels brighter than the air
    (grey CT or a colour wash), the colour bar along the bottom and the viewport's frame left out."""
    bright = shot.max(axis=2) > 60  # (the overlay's corner texts are sparse: rows and columns mostly bright count)
    bright[int(0.85 * len(bright)):] = False  # the colour bar, along the bottom
    bright[:4], bright[:, :4], bright[:, -4:] = False, False, False  # the active viewport's frame
    rows = np.nonzero(bright.sum(axis=1) > 0.5 * bright.sum(axis=1).max())[0]
    cols = np.nonzero(bright.sum(axis=0) > 0.5 * bright.sum(axis=0).max())[0]
    return rows.min(), rows.max(), cols.min(), cols.max()


def _screen_patch(shot: np.ndarray, top: int, bottom: int, left: int, right: int, half: float = 30.0):
    """The mean colour of a 5 x 5 screen patch at (x, y) mm, for water spanning -half .. half mm in x and y."""
    def at(x_mm: float, y_mm: float) -> np.ndarray:
        c = int(round(left + (x_mm + half) / (2 * half) * (right - left)))
        r = int(round(top + (y_mm + half) / (2 * half) * (bottom - top)))
        return shot[r - 2:r + 3, c - 2:c + 3].reshape(-1, 3).mean(axis=0)
    return at


def _coloured(rgb: np.ndarray) -> bool:
    return float(rgb.max() - rgb.min()) > 40


def _wait_for_dose_colour_bar(page, box: dict, timeout_s: float = 40) -> np.ndarray:
    """The viewport's pixels (rows, columns, RGB) once the dose's colour bar is drawn (it comes when the dose volume
    has loaded) and a second more for the rendering, or after the timeout."""
    deadline = time.monotonic() + timeout_s

    def viewport() -> np.ndarray:
        full = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"), dtype=float)
        return full[int(box["y"]):int(box["y"] + box["height"]), int(box["x"]):int(box["x"] + box["width"])]

    while time.monotonic() < deadline:
        bar = viewport()[int(0.9 * box["height"]):]
        if ((bar[..., 0] > 200) & (bar[..., 1] < 60)).sum() > 100:
            break
        time.sleep(0.5)
    time.sleep(1)
    return viewport()


def test_a_length_measured_in_ohif_is_stored_in_orthanc_and_recorded(orthanc, rt_stack, browser):
    case = util.small_phantom_case("ohif-sr")
    rest_upload(orthanc.base, case.ct)  # the CT alone: nothing to compute, only something to measure on
    study_uid = case.study.study_instance_uid
    page, errors = _open_in_ohif(browser, rt_stack, study_uid)
    overlay = page.locator("[data-cy=viewport-overlay-bottom-right]")
    count = len(case.ct)
    overlay.get_by_text(f"(1/{count})").wait_for(timeout=30_000)
    canvas = page.locator("[data-cy=viewport-pane] canvas").first
    box = canvas.bounding_box()
    x = box["x"] + box["width"] / 2 + 40  # beside the orientation marker drawn at the top centre
    page.mouse.move(x, box["y"] + box["height"] / 2)
    for shown in range(2, count // 2 + 2):  # scroll to a slice in the middle of the water
        page.mouse.wheel(0, 100)
        overlay.get_by_text(f"({shown}/{count})").wait_for(timeout=10_000)
    instance_number = int(re.search(r"I:\s*(\d+)", overlay.inner_text()).group(1))
    slice_ = next(ds for ds in case.ct if int(ds.InstanceNumber) == instance_number)
    top, bottom = _wait_for_water(page, x, box)
    page.screenshot(path=str(artifact("ohif-before-length.png")))

    # A vertical length over the middle half of the viewport, drawn by a mouse drag.
    y0, y1 = box["y"] + 0.25 * box["height"], box["y"] + 0.75 * box["height"]
    page.locator("[data-cy=Length-btn]").click()
    page.mouse.move(x, y0)
    page.mouse.down()
    page.mouse.move(x, y1, steps=25)
    page.mouse.up()
    page.locator("[data-cy=prompt-begin-tracking-yes-btn]").click(timeout=30_000)  # "Track measurements?"
    create = page.get_by_role("button", name="Create SR")
    if not create.is_visible():
        page.locator("[data-cy=trackedMeasurements-btn]").click()
    shown_mm = float(page.get_by_text(re.compile(r"^\d+(\.\d+)? mm$")).last.inner_text().split()[0])
    page.screenshot(path=str(artifact("ohif-length.png")))
    create.click()
    page.get_by_placeholder("Report name").fill("Orthanc-RT e2e length")
    with page.expect_response(lambda r: r.request.method == "POST" and "/dicom-web/studies" in r.url,
                              timeout=60_000) as stow:
        page.get_by_role("button", name="Save").click()
    viewer = f"http://127.0.0.1:{rt_stack.viewer_port}"
    assert stow.value.url.startswith(f"{viewer}/dicom-web/"), "the report must go through the viewer's proxy"
    assert stow.value.status == 200, stow.value.text()
    page.get_by_text("measurement saved successfully").wait_for(timeout=30_000)  # OHIF's own confirmation
    page.screenshot(path=str(artifact("ohif-report-saved.png")))

    # Orthanc holds the report ...
    job = orthanc.wait_job(lambda j: j["state"] in ("succeeded", "failed"), study=study_uid, kind="sr")
    assert job["state"] == "succeeded", job["message"]
    [sr_id] = orthanc.study_instances(study_uid, "SR")
    sr = pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{sr_id}/file").content))
    assert sr.SeriesDescription == "Orthanc-RT e2e length"
    # ... and our records the length, on the slice it was drawn on.
    rows = orthanc.get("/rt/measurements", params={"study": study_uid, "source": "sr"}).json()["items"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["type"], row["metric"], row["unit"]) == ("distance", "length", "mm")
    assert row["sr_instance_uid"] == str(sr.SOPInstanceUID)
    assert (row["sop_instance_uid"], row["series_instance_uid"]) == (str(slice_.SOPInstanceUID),
                                                                     str(slice_.SeriesInstanceUID))
    value = row["value"]
    assert value == pytest.approx(shown_mm, abs=0.05)  # what OHIF showed, to its one decimal

    # The report's own geometry: its two end points (image pixels) times the pixel spacing give the value.
    row_mm, col_mm = (float(v) for v in slice_.PixelSpacing)
    (c0, r0), (c1, r1) = np.reshape(_scoord(sr), (2, 2))
    assert value == pytest.approx(float(np.hypot((c1 - c0) * col_mm, (r1 - r0) * row_mm)), abs=0.01)

    # The drag: cornerstone fits this image (taller than the viewport's shape) so that the span between
    # its first and last pixel centres, (Rows - 1) x row spacing, fills the viewport height. Mouse
    # 2 px of slack for where the pointer events land (0.4 mm here, 0.5 % of the ~78 mm drawn).
    assert (slice_.Columns - 1) * col_mm / box["width"] < (slice_.Rows - 1) * row_mm / box["height"]
    mm_per_px = (slice_.Rows - 1) * row_mm / box["height"]
    assert value == pytest.approx((y1 - y0) * mm_per_px, abs=2 * mm_per_px)
    # And against the picture: the water column (its rows x row spacing) as drawn on the screen. Headless
    # Chromium's software WebGL draws the image about 2 % smaller than cornerstone's camera places it
    # (measured: 811.6 px shown for 825.5 px), so this ruler is good to a few per cent: 3 %, enough to
    # catch a lost pixel spacing (factor 3) or centimetres taken for millimetres (factor 10).
    hu = slice_.pixel_array[:, slice_.Columns // 2] * float(slice_.RescaleSlope) + float(slice_.RescaleIntercept)
    water_mm = int(np.count_nonzero(hu > -500)) * row_mm
    assert value == pytest.approx((y1 - y0) * water_mm / (bottom - top), rel=0.03)
    assert not errors, f"page errors: {errors[:3]}"


def _wait_for_water(page, x: float, box: dict, timeout_s: float = 30) -> tuple[float, float]:
    """Screen rows (sub-pixel, where the grey falls to half the water's) at which the water column that
    fills the viewport's centre starts and ends, along the vertical line x."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("L"), dtype=float)
        column = shot[int(box["y"]):int(box["y"] + box["height"]), int(x)]
        centre = len(column) // 2
        level = column[centre] / 2
        if level > 20:  # drawn (black until the slice arrives)
            first = last = centre
            while first > 0 and column[first - 1] > level:
                first -= 1
            while last < len(column) - 1 and column[last + 1] > level:
                last += 1
            if 0 < first and last < len(column) - 1:
                top = first - (column[first] - level) / (column[first] - column[first - 1])
                bottom = last + (column[last] - level) / (column[last] - column[last + 1])
                return box["y"] + top, box["y"] + bottom
        time.sleep(0.5)
    raise AssertionError("the CT slice never appeared whole in the viewport")


def _scoord(node) -> list[float]:
    """GraphicData of the first SCOORD in an SR content tree."""
    for item in node.get("ContentSequence", []):
        if item.get("ValueType") == "SCOORD":
            return [float(v) for v in item.GraphicData]
        found = _scoord(item)
        if found:
            return found
    return []


def test_the_viewer_is_no_way_around_orthancs_login(auth_stack, browser):
    case = util.small_phantom_case("ohif-auth")
    dora = ("dora", AUTH_USERS["dora"][0])
    rest_upload(auth_stack.orthanc_url, case.ct, auth=dora)
    viewer = f"http://127.0.0.1:{auth_stack.viewer_port}"
    study_uid, patient = case.study.study_instance_uid, case.study.patient_id
    vic = ("vic", AUTH_USERS["vic"][0])
    ct = case.ct[0]
    data_urls = [f"/dicom-web/studies?PatientID={patient}", f"/dicom-web/studies/{study_uid}/series",
                 f"/dicom-web/studies/{study_uid}/series/{ct.SeriesInstanceUID}/metadata",
                 f"/wado?requestType=WADO&studyUID={study_uid}&seriesUID={ct.SeriesInstanceUID}"
                 f"&objectUID={ct.SOPInstanceUID}&contentType=application/dicom"]

    # Without a login, or with a wrong one, the data answer 401 with Orthanc's challenge (so a browser asks).
    for url in data_urls:
        for auth in (None, ("vic", "not-the-password")):
            r = requests.get(viewer + url, auth=auth, timeout=30)
            assert r.status_code == 401, (url, auth, r.status_code)
            assert r.headers["WWW-Authenticate"].startswith("Basic"), url
            assert study_uid not in r.text and patient not in r.text
    report = util.instance_variant(ct, "posted-anonymously")
    assert stow_rs_response(viewer, [report]).status_code == 401
    assert len(as_user(auth_stack, "vic").study_instances(study_uid, "CT")) == len(case.ct)  # nothing added

    # OHIF's own files are public (the npm package and our app-config.js: no patient data, no secret).
    assert requests.get(viewer + "/", timeout=30).status_code == 200
    config = requests.get(viewer + "/app-config.js", timeout=30)
    assert config.status_code == 200 and config.text == CONFIG.read_text()
    assert not [pw for pw in [WORKER_USER[1], *(p for p, _ in AUTH_USERS.values())] if pw in config.text]

    # With a user's own login the proxy passes it on and Orthanc answers.
    for url in data_urls:
        assert requests.get(viewer + url, auth=vic, timeout=30).status_code == 200, url
    found = requests.get(viewer + data_urls[0], auth=vic, timeout=30).json()
    assert [s["0020000D"]["Value"][0] for s in found] == [study_uid]

    # In the browser: without a login the study query gets Orthanc's 401 and challenge, so the browser holds
    # it for the user's login (a dialog; headless Chromium shows none): no data arrives, no patient shows.
    with _context(browser) as anonymous:
        page = _ohif_page(anonymous)
        answered: list[tuple[int, str]] = []
        page.on("response", lambda r: "/dicom-web/" in r.url and answered.append((r.status, r.url)))
        with page.expect_request(lambda r: "/dicom-web/studies?" in r.url, timeout=30_000):
            page.goto(f"{viewer}/?mrn={patient}")
        time.sleep(3)
        assert not [u for status, u in answered if status == 200], answered
        assert page.get_by_text(patient).count() == 0
        page.screenshot(path=str(artifact("ohif-auth-refused.png")))
    # The viewer's log (it records refusals) shows OHIF's own query (its MRN filter is tag 00100020) refused.
    log = (auth_stack.log_dir / "viewer.log").read_text().splitlines()
    assert [line for line in log if '"GET /dicom-web/studies?00100020=' in line and '" 401 ' in line], log[-5:]
    with _context(browser, http_credentials={"username": vic[0], "password": vic[1]}) as logged_in:
        page = _ohif_page(logged_in)
        page.goto(f"{viewer}/?mrn={patient}", wait_until="networkidle")
        page.get_by_text(patient).first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifact("ohif-auth-study-list.png")))
        frames: list[str] = []
        page.on("response", lambda r: r.status == 200 and "/frames/" in r.url and frames.append(r.url))
        page.goto(f"{viewer}/viewer?StudyInstanceUIDs={study_uid}", wait_until="networkidle")
        overlay = page.locator("[data-cy=viewport-overlay-bottom-right]")
        overlay.get_by_text(f"/{len(case.ct)})").wait_for(timeout=30_000)
        assert any(f"/series/{ct.SeriesInstanceUID}/instances/" in u for u in frames), "no CT frame with the login"
        page.screenshot(path=str(artifact("ohif-auth-viewer.png")))


def test_the_orthanc_rt_panel_in_ohif_shows_jobs_dvh_and_metrics_with_the_users_role(auth_stack, browser):
    """The Orthanc-RT panel (app-config.js) reads /rt/ through the viewer with the user's own login: a viewer
    sees the study's succeeded dose job, the DVH of the dose on screen and the analysis' metrics; a user without
    an Orthanc-RT role sees Orthanc-RT's refusal in the panel."""
    job = succeeded_dose_job(auth_stack, "ohif-panel", reader="vic")
    vic_client = as_user(auth_stack, "vic")
    study_uid = job["study_instance_uid"]
    vic_client.wait_job(lambda j: j["state"] == "succeeded", study=study_uid, kind="analysis")
    dose_uid = job["outputs"]["rtdose"]["sop_instance_uid"]
    summary = vic_client.get(f"/rt/studies/{study_uid}/measurements/summary").json()["rois"]
    target = next(line for line in summary if line["roi_name"] == "TargetVolume"
                  and line["dose_sop_instance_uid"] == dose_uid)
    viewer = f"http://127.0.0.1:{auth_stack.viewer_port}"

    vic = {"username": "vic", "password": AUTH_USERS["vic"][0]}
    with _context(browser, http_credentials=vic) as context:
        page = _ohif_page(context)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{viewer}/viewer?StudyInstanceUIDs={study_uid}", wait_until="networkidle")
        page.locator("[data-cy=orthancRtResults-btn]").first.click()
        panel = page.locator("[data-cy=orthanc-rt-panel]")
        dose_job = panel.locator(f'li[data-rt-job="{job["id"]}"]')
        dose_job.wait_for(timeout=30_000)
        assert dose_job.get_attribute("data-rt-state") == "succeeded"
        assert dose_job.inner_text().startswith("dose succeeded")
        panel.locator("li[data-rt-state=succeeded]", has_text="analysis").wait_for()
        # The DVH of the dose on screen (the fused one: this study's only dose) as the DVH route draws it.
        image = panel.locator(f'img[data-rt-dvh="{dose_uid}"]')
        image.wait_for(timeout=30_000)
        page.wait_for_function("document.querySelector('[data-rt-dvh]').naturalWidth > 0", timeout=30_000)
        cells = panel.locator('tr[data-rt-roi="TargetVolume"] td')
        cells.first.wait_for(timeout=30_000)
        shown = cells.all_inner_texts()
        assert shown == ["TargetVolume", *(f"{target['metrics'][k]:.2f}" for k in ("volume", "Dmean", "D95", "D2",
                                                                                   "Dmax"))]
        assert float(shown[4]) > 0 and float(shown[5]) >= float(shown[3])  # a dose was delivered: Dmax >= D95 > 0
        panel.get_by_text("From OHIF reports (SR): 0 · manual: 0").wait_for()
        assert not panel.locator("[data-rt-error]").count()
        patient = vic_client.get(f"/studies/{job['orthanc_study_id']}").json()["PatientMainDicomTags"]
        text = panel.inner_text()
        assert not [patient[k] for k in ("PatientName", "PatientID") if patient.get(k) and patient[k] in text]
        page.screenshot(path=str(artifact("ohif-rt-panel.png")))
        assert not errors, f"page errors: {errors[:3]}"

    nobody = {"username": "nobody", "password": AUTH_USERS["nobody"][0]}
    with _context(browser, http_credentials=nobody) as context:
        page = _ohif_page(context)
        page.goto(f"{viewer}/viewer?StudyInstanceUIDs={study_uid}", wait_until="networkidle")
        # Orthanc refuses this user the study's DICOMweb too, and OHIF keeps its loading screen over the whole
        # viewer: Orthanc-RT's refusal shows as a notification above it.
        refused = "Orthanc-RT refused: 403: user 'nobody' has no Orthanc-RT role"
        page.get_by_text(refused).first.wait_for(timeout=30_000)
        page.locator("[data-sonner-toast]").last.hover(timeout=5_000)  # the notifications spread out (OHIF's own too)
        time.sleep(0.5)  # the notifications' own animation
        page.screenshot(path=str(artifact("ohif-rt-panel-refused.png")))
        # The panel's tab is under that screen (clicked by its DOM event): the panel words the refusal too.
        page.locator("[data-cy=orthancRtResults-btn]").first.dispatch_event("click")
        refusal = page.locator("[data-cy=orthanc-rt-panel] [data-rt-error]").first
        refusal.wait_for(timeout=30_000)
        assert refusal.get_attribute("data-rt-error") == "403"
        assert "user 'nobody' has no Orthanc-RT role" in refusal.inner_text()
        assert not page.locator("[data-rt-job]").count()

@contextmanager
def _context(browser, **kw) -> Iterator:
    """A fresh browser context (own storage, cache and HTTP credentials), closed afterwards."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, **kw)
    try:
        yield context
    finally:
        context.close()


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
    # The measurement summary: the analysis' numbers, as the summary route gives them.
    summary = orthanc.get(f"/rt/studies/{study_id}/measurements/summary").json()["rois"]
    target = next(line for line in summary if line["roi_name"] == "TargetVolume")
    cells = page.locator('#orthanc-rt-measurements tr[data-rt-roi="TargetVolume"] td')
    cells.first.wait_for(timeout=30_000)
    shown = cells.all_inner_texts()
    assert shown == ["TargetVolume", *(f"{target['metrics'][k]:.2f}" for k in ("volume", "Dmean", "D95", "Dmax"))]
    assert float(shown[2]) > 0 and float(shown[4]) >= float(shown[2])  # a dose was delivered: Dmax >= Dmean > 0
    page.locator("#orthanc-rt-measurement-counts").get_by_text("From OHIF reports (SR): 0").wait_for()
    page.screenshot(path=str(artifact("explorer-study.png")))

    page.goto(f"{orthanc.base}/app/explorer.html#instance?uuid={ids[-1]}")
    page.locator("#orthanc-rt-primaries").fill("30000")
    page.locator("#orthanc-rt-dose").click()
    page.get_by_text("Job queued:").wait_for(timeout=30_000)
    page.screenshot(path=str(artifact("explorer-plan.png")))
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
    page.screenshot(path=str(artifact("explorer-dose.png")), full_page=True)
