"""The dose-check report: a PDF a physicist signs off, from a `DoseComparison`.

Pages: (1) verdict, identification, criteria, gamma pass rates, dose
differences, notes and provenance (continued on further pages when long);
(2) the per-ROI table, rows out of tolerance marked; (3) the DVHs of both
doses; (4) slices through the focus point in three planes: reference,
evaluated, difference and gamma, over the CT when there is one. A missing
piece (no ROIs, no arrays, no gamma) leaves a sentence where it would be.

matplotlib's object API and PdfPages, TrueType fonts (pdf.fonttype 42) so
the text stays text (pdftotext reads it), no creation date so the same
comparison gives the same bytes. Called from the worker; on Orthanc's HTTP
threads run it through orthanc_rt.rendering.render_thread.render.
"""
from __future__ import annotations

import io
import math
import textwrap
from typing import Any

import numpy as np

import orthanc_rt
from orthanc_rt.analysis.dose_comparison import (
    DIFFERENCE_STATISTICS,
    FAIL,
    HIGH_DOSE_FRACTION,
    PASS,
    WARN,
    DoseComparison,
    DoseDescription,
)
from orthanc_rt.analysis.gamma import GammaMap

_PORTRAIT = (8.27, 11.69)  # A4, inches
_LANDSCAPE = (11.69, 8.27)
_VERDICT_COLOURS = {PASS: "#1a7f37", WARN: "#d97706", FAIL: "#c62828"}
_OUT_COLOUR = "#fde2e2"
# RBE 1.1 (ICRU 78): a median high-dose ratio this close to 1.1 or 1/1.1 suggests one dose is RBE-weighted
# and the other physical.
_RBE = 1.1
_RBE_HINT_TOLERANCE = 0.03
_METRIC_TOLERANCE_PERCENT = 3.0  # of the normalisation dose: the primary criteria's dose difference
_CT_WINDOW = (400.0, 40.0)  # soft tissue (width, level) HU
_CROP_MARGIN_MM = 20.0
_TABLE_ROWS_PER_PAGE = 38
_IDENTIFYING = ("patient", "study", "plan", "rtplan", "structure", "course", "requested")


def render_check_report(comparison: DoseComparison) -> bytes:
    """The report as PDF bytes."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    title = f"Independent dose check: {comparison.evaluated.label} vs {comparison.reference.label}"
    metadata = {"Title": title[:200], "Creator": f"Orthanc-RT {orthanc_rt.__version__}",
                "Subject": f"Verdict {comparison.verdict.upper()}", "CreationDate": None}
    with rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans", "font.size": 9}):
        with PdfPages(buffer, metadata=metadata) as pdf:
            for figure in _summary_pages(comparison):
                pdf.savefig(figure)
            for figure in _roi_pages(comparison):
                pdf.savefig(figure)
            pdf.savefig(_dvh_page(comparison))
            pdf.savefig(_slice_page(comparison))
    return buffer.getvalue()


# --- page 1: the summary ----------------------------------------------------------------------------------

class _TextFlow:
    """Lines of text down A4 pages, starting a new page when one is full."""

    def __init__(self, heading: str) -> None:
        self.pages: list[Any] = []
        self.heading = heading
        self._new_page()

    def _new_page(self) -> None:
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=_PORTRAIT)
        self.pages.append(self.figure)
        self.y = 0.965
        if len(self.pages) > 1:
            self.figure.text(0.06, self.y, f"{self.heading} (continued)", fontsize=10, color="0.35")
            self.y -= 0.03

    def line(self, text: str, *, size: float = 9, weight: str = "normal", colour: str = "black",
             indent: float = 0.0, gap: float = 0.0) -> None:
        step = size / 72 * 1.45 / _PORTRAIT[1]
        # characters per line at 9 pt across the page; bold glyphs are wider
        width = (100 if weight == "normal" else 90) * 9 / size - indent * 110
        for part in textwrap.wrap(text, width=int(width)) or [""]:
            if self.y - step < 0.04:
                self._new_page()
            self.figure.text(0.06 + indent, self.y, part, fontsize=size, fontweight=weight, color=colour,
                             va="top")
            self.y -= step
        self.y -= gap

    def section(self, text: str) -> None:
        if self.y < 0.12:
            self._new_page()
        self.y -= 0.008
        self.line(text, size=11, weight="bold", colour="#1f3b5c", gap=0.003)


def _summary_pages(c: DoseComparison) -> list[Any]:
    flow = _TextFlow("Dose check summary")
    flow.line("Independent dose check", size=16, weight="bold")
    flow.line(f"{c.evaluated.label}  compared with  {c.reference.label}", size=10, colour="0.25", gap=0.01)
    verdict = c.verdict.lower()
    flow.line(verdict.upper(), size=40, weight="bold", colour=_VERDICT_COLOURS.get(verdict, "black"), gap=0.004)
    flow.line(c.verdict_reason or "(no reason given)", size=11, gap=0.006)

    flow.section("Patient, study and plan")
    identifying = {k: v for k, v in c.provenance.items() if k.lower().startswith(_IDENTIFYING)}
    if identifying:
        for key, value in identifying.items():
            flow.line(f"{_label(key)}: {_text(value)}", indent=0.01)
    else:
        flow.line("No patient, study or plan identification recorded in the provenance.", indent=0.01,
                  colour="0.35")

    flow.section("Doses compared")
    for role, dose in (("Reference", c.reference), ("Evaluated", c.evaluated)):
        flow.line(f"{role}: {dose.label}", weight="bold", indent=0.01)
        for text in _dose_lines(dose):
            flow.line(text, size=8, indent=0.03)

    flow.section("Criteria and limits (AAPM TG-218)")
    primary = c.gamma[0].criteria if c.gamma else None
    if primary is not None:
        flow.line(f"Primary gamma criteria {primary.name}, "
                  f"{'local' if primary.local else 'global'} normalisation "
                  f"({'the reference dose at each point' if primary.local else 'the reference maximum'}), "
                  f"low-dose threshold {primary.low_dose_threshold_percent:g} % of the reference maximum.",
                  indent=0.01)
    flow.line(f"Pass at or above {c.params.pass_percent:g} % of points with gamma <= 1; action below "
              f"{c.params.action_percent:g} %; a warning in between.", indent=0.01)
    flow.line(f"Dose level: the high-dose median ratio within {c.params.dose_level_warn_percent:g} % of 1 passes, "
              f"beyond {c.params.dose_level_action_percent:g} % fails. The verdict is the worse of the two.",
              indent=0.01)

    flow.section("Gamma pass rates")
    if not c.gamma:
        flow.line("No gamma analysis in this comparison.", indent=0.01, colour="0.35")
    for index, g in enumerate(c.gamma):
        status = _rate_status(g.pass_rate_percent, c) if index == 0 else ""
        flow.line(f"{g.criteria.name:<16} threshold {g.criteria.low_dose_threshold_percent:g} %:  "
                  f"{g.pass_rate_percent:6.2f} % pass  ({g.evaluated_points:,} points evaluated)"
                  f"{'  [primary: ' + status + ']' if status else ''}",
                  indent=0.01, weight="bold" if index == 0 else "normal")

    flow.section("Dose differences (evaluated - reference)")
    if c.high_dose_ratio is not None and math.isfinite(c.high_dose_ratio):
        flow.line(f"High-dose median ratio evaluated / reference (reference >= {100 * HIGH_DOSE_FRACTION:.0f} % "
                  f"of its maximum): {c.high_dose_ratio:.4f}", indent=0.01)
        hint = _rbe_hint(c.high_dose_ratio)
        if hint:
            flow.line(hint, indent=0.01, colour=_VERDICT_COLOURS[WARN], weight="bold")
    else:
        flow.line("High-dose median ratio: not available.", indent=0.01, colour="0.35")
    if c.difference:
        for key, value in c.difference.items():
            what, unit = DIFFERENCE_STATISTICS.get(key, (_label(key), ""))
            flow.line(f"{what[:1].upper() + what[1:]}: {_number(value)} {unit}".rstrip(), indent=0.01)
    else:
        flow.line("No dose-difference statistics recorded.", indent=0.01, colour="0.35")

    flow.section("Notes and assumptions")
    for note in c.notes or ["(none)"]:
        flow.line(f"- {note}", indent=0.01)

    flow.section("Calculation and provenance")
    rest = {k: v for k, v in c.provenance.items() if k not in identifying}
    if not rest:
        flow.line("No provenance recorded.", indent=0.01, colour="0.35")
    for key, value in rest.items():
        _provenance_lines(flow, key, value, 0.01)
    flow.line(f"Report: Orthanc-RT {orthanc_rt.__version__}", size=7, colour="0.4", gap=0)
    return flow.pages


def _dose_lines(dose: DoseDescription) -> list[str]:
    lines = [f"summation: {dose.summation}; dose type: {dose.dose_type}"
             + (f"; manufacturer: {dose.manufacturer}" if dose.manufacturer else "")
             + (f"; maximum {dose.max_gy:.3f} Gy" if math.isfinite(dose.max_gy) else "")]
    lines += [f"RT Dose {uid}" for uid in dose.sop_instance_uids]
    return lines


def _provenance_lines(flow: _TextFlow, key: str, value: Any, indent: float) -> None:
    if isinstance(value, dict) and value:
        flow.line(f"{_label(key)}:", indent=indent)
        for sub, sub_value in value.items():
            _provenance_lines(flow, str(sub), sub_value, indent + 0.02)
    else:
        # checksums are long hex strings: a smaller font keeps each on one line
        small = isinstance(value, str) and len(value) > 40 and " " not in value
        flow.line(f"{_label(key)}: {_text(value)}", indent=indent, size=7.5 if small else 9)


def _rate_status(rate: float, c: DoseComparison) -> str:
    if rate >= c.params.pass_percent:
        return f"at or above the pass limit {c.params.pass_percent:g} %"
    if rate < c.params.action_percent:
        return f"below the action limit {c.params.action_percent:g} %"
    return f"between the action ({c.params.action_percent:g} %) and pass ({c.params.pass_percent:g} %) limits"


def _rbe_hint(ratio: float) -> str:
    for factor, which in ((_RBE, "evaluated"), (1 / _RBE, "reference")):
        if abs(ratio - factor) <= _RBE_HINT_TOLERANCE:
            return (f"The ratio is close to {factor:.2f}: the {which} dose may be RBE-weighted (x 1.1) and the "
                    f"other physical. Check both DoseTypes and the RBE convention before reading the gamma.")
    return ""


# --- page 2: the ROI table --------------------------------------------------------------------------------

def _normalisation(c: DoseComparison) -> tuple[float | None, str]:
    """The dose the table's % are of: the prescription when the provenance has one, else the reference maximum."""
    for key in ("prescription_gy", "prescribed_dose_gy"):
        value = c.provenance.get(key)
        if isinstance(value, (int, float)) and value > 0:
            return float(value), f"the prescription ({float(value):.2f} Gy)"
    maximum = c.reference.max_gy
    if not math.isfinite(maximum) and c.reference_gy is not None and c.reference_gy.size:
        maximum = float(np.nanmax(c.reference_gy))
    if math.isfinite(maximum) and maximum > 0:
        return maximum, f"the reference maximum ({maximum:.2f} Gy)"
    return None, "no normalisation dose (no reference maximum)"


def _roi_rows(c: DoseComparison, norm: float | None) -> list[tuple[list[str], bool, bool]]:
    """(cells, out of tolerance, first row of its ROI) of every table row."""
    rows = []
    for roi in c.rois:
        rate = roi.gamma_pass_rate_percent
        rate_out = rate is not None and rate < c.params.action_percent
        head = [roi.name, f"{roi.volume_cc:.1f}", "-" if rate is None else f"{rate:.1f}"]
        metrics = list(roi.metrics.items()) or [("-", (float("nan"), float("nan")))]
        for index, (metric, (ref, ev)) in enumerate(metrics):
            diff = ev - ref
            percent = 100.0 * diff / norm if norm else float("nan")
            # the pass rate sits on the ROI's first row: that row is out when the rate is
            out = (rate_out and index == 0) or (math.isfinite(percent) and abs(percent) > _METRIC_TOLERANCE_PERCENT)
            cells = (head if index == 0 else ["", "", ""]) + [
                metric, _number(ref, 2), _number(ev, 2), _number(diff, 2, sign=True),
                _number(percent, 1, sign=True), "OUT" if out else ""]
            rows.append((cells, out, index == 0))
    return rows


def _roi_pages(c: DoseComparison) -> list[Any]:
    from matplotlib.figure import Figure

    norm, norm_text = _normalisation(c)
    rows = _roi_rows(c, norm)
    chunks = [rows[i:i + _TABLE_ROWS_PER_PAGE] for i in range(0, len(rows), _TABLE_ROWS_PER_PAGE)] or [[]]
    pages = []
    for number, chunk in enumerate(chunks):
        figure = Figure(figsize=_PORTRAIT)
        heading = "Regions of interest" + (f" (continued, {number + 1}/{len(chunks)})" if number else "")
        figure.text(0.06, 0.965, heading, fontsize=14, fontweight="bold", va="top")
        figure.text(0.06, 0.935, f"Gamma pass rates under the primary criteria "
                    f"{c.gamma[0].criteria.name if c.gamma else '(none)'}, points inside each ROI. "
                    f"Differences are evaluated - reference; % of {norm_text}.", fontsize=8, va="top",
                    wrap=True)
        if not chunk:
            figure.text(0.5, 0.6, "No regions of interest in this comparison.", ha="center", fontsize=12,
                        color="0.35")
            pages.append(figure)
            continue
        axes = figure.add_axes((0.04, 0.05, 0.92, 0.83))
        axes.axis("off")
        columns = ["ROI", "Volume\n[cc]", "γ pass\n[%]", "Metric", "Reference\n[Gy]", "Evaluated\n[Gy]",
                   "Δ\n[Gy]", "Δ\n[%]", ""]
        table = axes.table(cellText=[cells for cells, _, _ in chunk], colLabels=columns, loc="upper center",
                           cellLoc="right", colLoc="center",
                           colWidths=[0.22, 0.09, 0.08, 0.12, 0.11, 0.11, 0.09, 0.08, 0.06])
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1.0, 1.25)
        for (row, column), cell in table.get_celld().items():
            cell.set_edgecolor("0.8")
            if row == 0:
                cell.set_facecolor("#e8eef5")
                cell.set_text_props(fontweight="bold")
                cell.set_height(cell.get_height() * 1.6)
                continue
            cells, out, first = chunk[row - 1]
            if column == 0:
                cell.set_text_props(ha="left", fontweight="bold")
                cell._loc = "left"
            elif column == 3:
                cell.set_text_props(ha="center")
                cell._loc = "center"
            if out:
                cell.set_facecolor(_OUT_COLOUR)
                if column == 8:
                    cell.set_text_props(color=_VERDICT_COLOURS[FAIL], fontweight="bold", ha="center")
        figure.text(0.06, 0.905, f"OUT: |Δ| > {_METRIC_TOLERANCE_PERCENT:g} % of {norm_text}, or the ROI's "
                    f"gamma pass rate below the action limit {c.params.action_percent:g} %.", fontsize=8,
                    va="top", color=_VERDICT_COLOURS[FAIL])
        pages.append(figure)
    return pages


# --- page 3: DVHs -----------------------------------------------------------------------------------------

def _dvh_page(c: DoseComparison) -> Any:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=_LANDSCAPE)
    figure.suptitle("Dose-volume histograms", fontsize=14, fontweight="bold", x=0.06, ha="left")
    with_dvh = [roi for roi in c.rois if roi.dvh is not None and len(roi.dvh.dose_bins_gy)]
    if not with_dvh:
        figure.text(0.5, 0.5, "No DVHs in this comparison.", ha="center", fontsize=12, color="0.35")
        return figure
    axes = figure.add_axes((0.07, 0.1, 0.66, 0.8))
    colours = _roi_colours(len(with_dvh))
    for roi, colour in zip(with_dvh, colours):
        dvh = roi.dvh
        axes.plot(dvh.dose_bins_gy, dvh.reference_volume_percent, color=colour, linewidth=1.6, label=roi.name)
        axes.plot(dvh.dose_bins_gy, dvh.evaluated_volume_percent, color=colour, linewidth=1.6, linestyle="--")
    axes.set_xlabel("Dose [Gy]")
    axes.set_ylabel("Volume [%]")
    axes.set_ylim(0, 102)
    axes.set_xlim(left=0)
    axes.grid(True, alpha=0.3)
    roi_legend = axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="ROI",
                             frameon=False)
    axes.add_artist(roi_legend)
    styles = [Line2D([], [], color="0.2", linewidth=1.6, label=f"reference: {_short(c.reference.label)}"),
              Line2D([], [], color="0.2", linewidth=1.6, linestyle="--",
                     label=f"evaluated: {_short(c.evaluated.label)}")]
    axes.legend(handles=styles, loc="lower left", bbox_to_anchor=(1.02, 0.0), fontsize=8, frameon=False)
    return figure


def _roi_colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


# --- page 4: slices ---------------------------------------------------------------------------------------

def _slice_page(c: DoseComparison) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=_LANDSCAPE)
    figure.suptitle("Dose, difference and gamma through the focus point", fontsize=14, fontweight="bold",
                    x=0.04, ha="left")
    reference, evaluated = c.reference_gy, c.evaluated_gy
    if reference is None or evaluated is None or reference.ndim != 3 or reference.shape != evaluated.shape \
            or reference.size == 0:
        why = "The dose arrays were not kept with this comparison" if reference is None or evaluated is None \
            else "The two dose arrays are not on one grid"
        figure.text(0.5, 0.5, f"{why}: no slices.", ha="center", fontsize=12, color="0.35")
        return figure
    reference = np.nan_to_num(np.asarray(reference, dtype=np.float32))
    evaluated = np.nan_to_num(np.asarray(evaluated, dtype=np.float32))
    maximum = float(reference.max())
    top = 1.05 * max(maximum, float(evaluated.max()))  # one scale for both doses, neither saturated
    if maximum <= 0:
        figure.text(0.5, 0.5, "The reference dose is zero everywhere: no slices.", ha="center", fontsize=12,
                    color="0.35")
        return figure
    focus = _focus(c, reference)
    gamma = _gamma_array(c.gamma[0] if c.gamma else None, reference.shape)
    ct = c.ct_hu if c.ct_hu is not None and np.shape(c.ct_hu) == reference.shape else None
    threshold = (c.gamma[0].criteria.low_dose_threshold_percent if c.gamma else 10.0) / 100.0 * maximum
    difference = 100.0 * (evaluated - reference) / maximum
    relevant = np.abs(difference[(reference >= threshold) | (evaluated >= threshold)])
    limit = max(3.0, float(np.ceil(np.percentile(relevant, 99.5)))) if relevant.size else 3.0
    limit = min(limit, 20.0)

    panels = [("Reference [Gy]", reference, dict(cmap="turbo", vmin=0, vmax=top), True),
              ("Evaluated [Gy]", evaluated, dict(cmap="turbo", vmin=0, vmax=top), True),
              ("Evaluated - reference\n[% of reference max]", difference,
               dict(cmap="RdBu_r", vmin=-limit, vmax=limit), True),
              ("Gamma " + (c.gamma[0].criteria.name if c.gamma else ""), gamma,
               dict(cmap="coolwarm", vmin=0, vmax=2), False)]
    dose_mask = (reference >= threshold) | (evaluated >= threshold)
    spacing = tuple(float(s) for s in c.spacing_mm)
    origin = tuple(float(o) for o in c.origin_mm)
    crop = _crop(reference >= threshold, spacing)
    grid = figure.add_gridspec(3, 4, left=0.06, right=0.97, top=0.88, bottom=0.08, hspace=0.38, wspace=0.35)
    for row, plane in enumerate(("axial", "coronal", "sagittal")):
        for column, (title, volume, style, masked) in enumerate(panels):
            axes = figure.add_subplot(grid[row, column])
            if volume is None:
                axes.axis("off")
                axes.text(0.5, 0.5, "no gamma map", ha="center", va="center", transform=axes.transAxes,
                          color="0.35")
                continue
            image = _draw_plane(axes, plane, volume, dose_mask if masked else None, ct, focus, origin, spacing,
                                crop, style)
            if row == 0:
                axes.set_title(title, fontsize=9, fontweight="bold")
            if column == 0:
                axes.set_ylabel(f"{plane.upper()}\n{axes.get_ylabel()}", fontsize=8)
            bar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.03)
            bar.ax.tick_params(labelsize=6)
            if column == 3:
                bar.ax.axhline(1.0, color="black", linewidth=1.5)
                bar.set_ticks([0, 0.5, 1, 1.5, 2])
    figure.text(0.05, 0.015, f"Focus (z, y, x) voxel {focus}; doses shown above "
                f"{threshold:.2f} Gy ({100 * threshold / maximum:.0f} % of the reference maximum "
                f"{maximum:.2f} Gy){' over the CT (W400/L40)' if ct is not None else '; no CT'}. "
                "Axial: anterior up, patient right on the left; coronal and sagittal: superior up. "
                "Gamma > 1 in red.", fontsize=7)
    return figure


def _focus(c: DoseComparison, reference: np.ndarray) -> tuple[int, int, int]:
    if c.focus_zyx is not None and all(0 <= int(i) < n for i, n in zip(c.focus_zyx, reference.shape)):
        return tuple(int(i) for i in c.focus_zyx)  # type: ignore[return-value]
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(reference)), reference.shape))  # type: ignore


def _gamma_array(g: GammaMap | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if g is None or np.shape(g.gamma) != shape:
        return None
    return np.asarray(g.gamma, dtype=np.float32)


def _crop(mask: np.ndarray, spacing_xyz: tuple[float, ...]) -> list[tuple[int, int]]:
    """Index ranges [z, y, x] around the dose above threshold, with a margin: the target fills the panels."""
    if not mask.any():
        return [(0, n) for n in mask.shape]
    ranges = []
    for axis, step in zip(range(3), (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        margin = int(math.ceil(_CROP_MARGIN_MM / step))
        ranges.append((max(0, int(present[0]) - margin), min(mask.shape[axis], int(present[-1]) + margin + 1)))
    return ranges


def _draw_plane(axes: Any, plane: str, volume: np.ndarray, mask: np.ndarray | None, ct: np.ndarray | None,
                focus: tuple[int, int, int], origin: tuple[float, ...], spacing: tuple[float, ...],
                crop: list[tuple[int, int]], style: dict[str, Any]) -> Any:
    z, y, x = focus
    (z0, z1), (y0, y1), (x0, x1) = crop

    def edges(axis_xyz: int, lo: int, hi: int) -> tuple[float, float]:
        return origin[axis_xyz] + (lo - 0.5) * spacing[axis_xyz], origin[axis_xyz] + (hi - 0.5) * spacing[axis_xyz]

    if plane == "axial":  # rows y (anterior at the top), columns x
        take = lambda v: v[z, y0:y1, x0:x1]  # noqa: E731
        (left, right), (bottom, top) = edges(0, x0, x1), edges(1, y0, y1)
        extent, origin_kw, labels, cross = (left, right, top, bottom), "upper", ("x [mm]", "y [mm]"), (x, y, 0, 1)
    elif plane == "coronal":  # rows z (superior at the top), columns x
        take = lambda v: v[z0:z1, y, x0:x1]  # noqa: E731
        (left, right), (bottom, top) = edges(0, x0, x1), edges(2, z0, z1)
        extent, origin_kw, labels, cross = (left, right, bottom, top), "lower", ("x [mm]", "z [mm]"), (x, z, 0, 2)
    else:  # sagittal: rows z, columns y (anterior on the left)
        take = lambda v: v[z0:z1, y0:y1, x]  # noqa: E731
        (left, right), (bottom, top) = edges(1, y0, y1), edges(2, z0, z1)
        extent, origin_kw, labels, cross = (left, right, bottom, top), "lower", ("y [mm]", "z [mm]"), (y, z, 1, 2)
    if ct is not None:
        width, level = _CT_WINDOW
        axes.imshow(take(ct), cmap="gray", vmin=level - width / 2, vmax=level + width / 2, extent=extent,
                    origin=origin_kw, interpolation="nearest")
    else:
        axes.set_facecolor("0.85")
    data = take(volume).astype(np.float32)
    hidden = ~np.isfinite(data)
    if mask is not None:
        hidden |= ~take(mask)
    image = axes.imshow(np.ma.masked_array(data, hidden), extent=extent, origin=origin_kw,
                        interpolation="nearest", alpha=0.75 if ct is not None else 1.0, **style)
    # the other two planes' positions, to orient the reader
    horizontal, vertical, h_axis, v_axis = cross
    axes.axvline(origin[h_axis] + horizontal * spacing[h_axis], color="white", linewidth=0.5, linestyle=":")
    axes.axhline(origin[v_axis] + vertical * spacing[v_axis], color="white", linewidth=0.5, linestyle=":")
    axes.set_aspect("equal")
    axes.set_xlabel(labels[0], fontsize=6, labelpad=1)
    axes.tick_params(labelsize=6)
    axes.set_ylabel(labels[1], fontsize=6, labelpad=1)
    return image


# --- values -----------------------------------------------------------------------------------------------

def _label(key: str) -> str:
    text = str(key).replace("_", " ")
    return text[:1].upper() + text[1:]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) if value else "(none)"
    return str(value)


def _number(value: float, digits: int | None = None, *, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if digits is None:
        digits = 3 if abs(value) < 100 else 1
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"

