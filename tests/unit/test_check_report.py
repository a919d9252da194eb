"""The dose-check PDF: poppler (pdftotext, pdftoppm) reads it as a person would; pages kept in test-artifacts/."""
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from orthanc_rt.analysis.dose_comparison import FAIL
from orthanc_rt.rendering.check_report import render_check_report
from tests.support.browser import ARTIFACTS, artifact
from tests.support.comparisons import bare_comparison, synthetic_comparison

pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
                                reason="poppler-utils (pdftoppm, pdftotext) is not installed")


def _pages(pdf: bytes, name: str, tmp_path) -> list[np.ndarray]:
    """The pages as RGB arrays at 50 dpi; the PNGs are kept for a person to look at."""
    source = tmp_path / f"{name}.pdf"
    source.write_bytes(pdf)
    prefix = artifact(f"check-report-{name}")
    for old in ARTIFACTS.glob(f"check-report-{name}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(source), str(prefix)], check=True, timeout=60)
    files = sorted(ARTIFACTS.glob(f"check-report-{name}-*.png"))
    return [np.asarray(Image.open(f).convert("RGB"), dtype=np.int16) for f in files]


def _text(pdf: bytes, tmp_path, page: int | None = None) -> str:
    source = tmp_path / "text.pdf"
    source.write_bytes(pdf)
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(["pdftotext", "-layout", *pages, str(source), "-"], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def _share_near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> float:
    return float(np.mean(np.all(np.abs(image - np.array(colour)) <= tolerance, axis=-1)))


def test_pass_report_reads_as_a_physicist_expects(tmp_path):
    comparison = synthetic_comparison()
    pdf = render_check_report(comparison)
    assert pdf.startswith(b"%PDF-")
    pages = _pages(pdf, "pass", tmp_path)
    assert len(pages) == 4

    summary = _text(pdf, tmp_path, 1)
    assert "PASS" in summary and "FAIL" not in summary
    assert "3%/2mm" in summary and "3%/3mm" in summary
    assert "threshold 10 %" in summary and "at or above 95 %" in summary and "action below 90 %" in summary
    assert f"{comparison.primary.pass_rate_percent:.2f} % pass" in summary
    assert f"({comparison.primary.evaluated_points:,} points evaluated)" in summary
    assert "SYN-001" in summary and "MCsquare" in summary and "a" * 64 in summary
    assert f"{comparison.high_dose_ratio:.4f}" in summary and "RBE-weighted" not in summary
    assert "resampled trilinearly" in summary

    table = _text(pdf, tmp_path, 2)
    for roi in comparison.rois:
        assert roi.name in table
    assert "D95" in table and "Dmean" in table and "prescription (60.00 Gy)" in table

    for page in pages:  # not blank: a page of text or pictures has contrast
        assert page.std() > 10
    slices = pages[3]
    chroma = slices.max(axis=-1) - slices.min(axis=-1)
    red = (slices[..., 0] > 150) & (slices[..., 1] < 110) & (slices[..., 2] < 90)
    ct_grey = (chroma < 8) & (slices[..., 0] > 90) & (slices[..., 0] < 170)
    assert np.mean(chroma > 80) > 0.04  # dose colour washes, far more than the colour bars alone
    assert np.mean(red) > 0.01  # the high-dose plateau in the dose panels
    assert np.mean(ct_grey) > 0.05  # the CT (soft tissue, W400/L40) under the doses


def test_verdict_colour_is_on_the_first_page(tmp_path):
    green = _share_near(_pages(render_check_report(synthetic_comparison()), "colour-pass", tmp_path)[0],
                        (26, 127, 55), 30)
    red = _share_near(_pages(render_check_report(synthetic_comparison(failing=True)), "colour-fail",
                             tmp_path)[0], (26, 127, 55), 30)
    assert green > 0.002 and red < green / 10


def test_fail_report_says_fail_and_marks_the_rows(tmp_path):
    comparison = synthetic_comparison(failing=True, with_ct=False)
    assert comparison.verdict == FAIL
    pdf = render_check_report(comparison)
    pages = _pages(pdf, "fail", tmp_path)
    assert len(pages) == 4
    summary = _text(pdf, tmp_path, 1)
    assert "FAIL" in summary and "below the action limit 90 %" in summary
    assert "RBE-weighted" in " ".join(summary.split())  # the median ratio is near 1.10
    ptv = next(line for line in _text(pdf, tmp_path, 2).splitlines() if line.strip().startswith("PTV"))
    assert ptv.rstrip().endswith("OUT")
    assert _share_near(pages[0], (198, 40, 40), 30) > 0.002  # the red verdict


def test_a_comparison_without_rois_or_arrays_still_renders(tmp_path):
    pdf = render_check_report(bare_comparison())
    assert len(_pages(pdf, "bare", tmp_path)) == 4
    text = " ".join(_text(pdf, tmp_path).split())
    assert "No regions of interest in this comparison." in text
    assert "No DVHs in this comparison." in text
    assert "not kept with this comparison: no slices." in text
    assert "No provenance recorded." in text


def test_metadata_and_same_bytes_twice(tmp_path):
    comparison = synthetic_comparison()
    pdf = render_check_report(comparison)
    (tmp_path / "m.pdf").write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(tmp_path / "m.pdf")], capture_output=True, text=True, check=True).stdout
    assert "Title:" in info and comparison.evaluated.label in info and "Orthanc-RT" in info
    assert "CreationDate" not in info
    assert render_check_report(comparison) == pdf
