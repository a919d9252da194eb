"""The launcher's user commands: `dose`, `plan`, `check`, `jobs`, `measurements` (on orthanc_rt.client).

Each talks to a running Orthanc-RT (`--url`, else ORTHANC_RT_CLIENT_URL: see
`RtClient.from_env`) as a registered user (`--user`/`--password`, else
ORTHANC_RT_CLIENT_USER/_PASSWORD). Long jobs are followed with a progress bar
on a terminal (tqdm), one line per stage otherwise (logs, pipes). A refusal or
a failed job prints the server's message on stderr and exits 1; argparse
answers a bad command line with the usage line and exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, TextIO, TypeVar

from orthanc_rt.client.api import ProgressCallback, RtClient
from orthanc_rt.client.results import Job, Plan
from orthanc_rt.errors import RtApiError, RtApiUnreachable, RtJobError
from orthanc_rt.records import jobs as job_records
from orthanc_rt.scheduling import kinds

NAMES = ("dose", "plan", "check", "jobs", "measurements")
T = TypeVar("T")


def add_commands(sub: Any) -> None:
    """Add the user commands to the launcher's subcommand parsers (`orthanc_rt.ops.cli.build_parser`)."""
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("server")
    group.add_argument("--url", help="Orthanc-RT's base URL (default: ORTHANC_RT_CLIENT_URL, else this host)")
    group.add_argument("--user", help="Orthanc user (default: ORTHANC_RT_CLIENT_USER)")
    group.add_argument("--password", help="its password (default: ORTHANC_RT_CLIENT_PASSWORD)")
    group.add_argument("--json", action="store_true", help="print the server's JSON answer instead of a summary")
    waiting = argparse.ArgumentParser(add_help=False)
    group = waiting.add_argument_group("waiting")
    group.add_argument("--no-wait", action="store_true", help="print the job and return at once")
    # No limit by default: every job has a time limit of its own, and a queue may be long.
    group.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="give up waiting after this long (exit 1; the job goes on); default: until it ends")
    group.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")

    dose = sub.add_parser("dose", parents=[connection, waiting], help="compute the dose of a stored RT Ion Plan "
                          "and wait for its RTDOSE")
    dose.add_argument("plan", metavar="rtplan-instance-id", help="Orthanc instance id of the RT Ion Plan")
    dose.add_argument("--primaries", type=int, help="Monte Carlo primaries (default: the server's)")
    dose.add_argument("--scoring-spacing", type=float, metavar="MM", help="dose grid spacing (default: the CT's)")
    dose.add_argument("--keep-outside-body", action="store_true", help="keep the dose in air (restrict_to_body "
                      "false)")
    dose.add_argument("--full-grid", action="store_true", help="store the whole grid (crop_grid false)")
    dose.add_argument("--let", action="store_true", help="also score LETd and store it as a Parametric Map")
    dose.add_argument("--rbe-model", metavar="MODEL", help="also store an RBE-weighted RTDOSE: constant, mcnamara "
                      "or wedenberg (docs/physics.md)")
    dose.add_argument("--alpha-beta", type=float, metavar="GY", help="α/β of the RBE model (default: the server's)")

    plan = sub.add_parser("plan", parents=[connection, waiting], help="plan a study (POST /rt/plans) and wait "
                          "for its RTPLAN and RTDOSE")
    plan.add_argument("study", help="Orthanc study id or StudyInstanceUID")
    plan.add_argument("--target", required=True, metavar="ROI", help="the target ROI's name")
    plan.add_argument("--prescription", type=float, metavar="GY", help="dose to the target over all fractions")
    plan.add_argument("--workflow", default="proton-impt", help="proton-impt (default), proton-robust, "
                      "photon-ccc: GET /rt/workflows")
    plan.add_argument("--fractions", type=int)
    plan.add_argument("--beams", type=int, dest="beam_count", help="evenly spaced beams from gantry 0")
    plan.add_argument("--gantry", type=float, nargs="+", metavar="DEG", help="gantry angles (win over --beams)")
    plan.add_argument("--beamlet-primaries", type=int, help="protons per spot for the beamlets")
    plan.add_argument("--final-primaries", type=int, help="protons for the final dose")
    plan.add_argument("--structure-set", help="the RTSTRUCT (default: the study's newest with the target)")
    plan.add_argument("--ct-series", help="the CT series (default: the structure set's)")
    plan.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                      help="any other request field, e.g. --param spot_spacing_mm=4 "
                           "--param 'robustness={\"setup_mm\": 3}' (docs/planning.md)")

    check = sub.add_parser("check", parents=[connection, waiting], help="check an RTDOSE against its recomputed "
                           "plan (or another dose) and wait for the verdict")
    check.add_argument("dose", metavar="rtdose-id", help="Orthanc instance id or SOPInstanceUID of the RTDOSE")
    check.add_argument("--with", dest="with_dose", metavar="RTDOSE", help="compare with this dose instead")
    check.add_argument("--primaries", type=int, help="primaries of the recompute")
    check.add_argument("--dose-percent", type=float, help="gamma dose criterion (default: the server's)")
    check.add_argument("--distance-mm", type=float, help="gamma distance criterion (default: the server's)")

    listing = sub.add_parser("jobs", parents=[connection], help="list jobs, newest first")
    listing.add_argument("--state", choices=job_records.STATES)
    listing.add_argument("--kind", choices=kinds.NAMES)
    listing.add_argument("--study", help="StudyInstanceUID or Orthanc study id")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (up to 500; default 50)")
    listing.add_argument("--offset", type=int, default=0)

    measurements = sub.add_parser("measurements", parents=[connection], help="list or export measurements")
    for name in ("study", "series", "roi", "type", "metric", "dose", "job", "sort"):
        measurements.add_argument(f"--{name}")
    measurements.add_argument("--source", choices=("dvh", "image", "manual", "sr"))
    measurements.add_argument("--limit", type=int, help="at most this many (default 100; up to 100000 with --csv)")
    measurements.add_argument("--offset", type=int)
    measurements.add_argument("--csv", action="store_true", help="the CSV export (columns: docs/measurements.md)")
    measurements.add_argument("-o", "--output", metavar="FILE", help="write the CSV here instead of stdout")


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one user command; its exit status (0 done, 1 refused or failed, 130 interrupted)."""
    out, err = out or sys.stdout, err or sys.stderr
    client = _client(args)
    try:
        return _COMMANDS[args.command](client, args, out, err)
    except RtJobError as exc:
        if args.json:
            print(json.dumps(exc.job, indent=2), file=out)
        print(f"error: {exc.message}", file=err)
        return 1
    except RtApiUnreachable as exc:
        print(f"error: {exc.message}: is Orthanc-RT running there? (--url, ORTHANC_RT_CLIENT_URL)", file=err)
        return 1
    except RtApiError as exc:
        status = f" (HTTP {exc.status})" if exc.status is not None else ""
        print(f"error: {exc.route}{status}: {exc.message}", file=err)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the job goes on (./orthanc-rt jobs; DELETE /rt/jobs/{id} cancels it)", file=err)
        return 130


def progress_reporter(label: str, *, enabled: bool = True, stream: TextIO | None = None) -> "_Progress":
    """An `on_progress` callback for `RtClient.wait_job`: a tqdm bar on a terminal, a line per change of
    state or stage elsewhere (a log fills with a bar's redraws). Close it when the wait ends."""
    return _Progress(label, enabled=enabled, stream=stream or sys.stderr)


class _Progress:
    def __init__(self, label: str, *, enabled: bool, stream: TextIO):
        self.label, self.enabled, self.stream = label, enabled, stream
        self.bar: Any = None
        self.last_line = ""
        if enabled and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=label, file=stream, leave=True,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}{postfix}")

    def __call__(self, job: Job) -> None:
        if not self.enabled:
            return
        stage = job.get("stage") or ""
        stage = "" if stage in (job["state"], "done") else stage  # "queued queued", "succeeded done": say it once
        eta = f"ETA {job['eta_seconds']:.0f} s" if job.get("eta_seconds") else ""
        if self.bar is not None:
            self.bar.set_description_str(f"{self.label}: {job['state']} {stage}".rstrip(), refresh=False)
            self.bar.n = round(100 * (job.get("progress") or 0.0), 1)
            self.bar.set_postfix_str(eta, refresh=False)
            self.bar.refresh()
            return
        line = f"{self.label}: {job['state']} {stage}".rstrip()
        if line != self.last_line:
            print(f"{line} ({100 * (job.get('progress') or 0.0):.0f} %{', ' + eta if eta else ''})",
                  file=self.stream, flush=True)
            self.last_line = line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _client(args: argparse.Namespace) -> RtClient:
    return RtClient.from_env(url=args.url, username=args.user, password=args.password)


def _following(args: argparse.Namespace, label: str, err: TextIO, wait: Callable[[ProgressCallback], T]) -> T:
    """`wait(on_progress)` with a progress reporter that is closed however the wait ends."""
    progress = progress_reporter(label, enabled=not args.no_progress, stream=err)
    try:
        return wait(progress)
    finally:
        progress.close()


def _dose(client: RtClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    requested = client.request_dose(args.plan, primaries=args.primaries, scoring_spacing_mm=args.scoring_spacing,
                                    restrict_to_body=False if args.keep_outside_body else None,
                                    crop_grid=False if args.full_grid else None, let=True if args.let else None,
                                    rbe_model=args.rbe_model, alpha_beta_gy=args.alpha_beta)
    job = requested["job"]
    if args.no_wait:
        return _print(out, args, requested, f"dose job {job['id']}: {job['state']} "
                                            f"({'new' if requested['created'] else 'requested before'})")
    if not args.json:
        print(f"dose job {job['id']} ({'new' if requested['created'] else 'requested before'}) for plan {args.plan}",
              file=out, flush=True)
    job = _following(args, "dose", err, lambda report: client.wait_job(job["id"], on_progress=report,
                                                                        timeout_s=args.timeout))
    outputs = job["outputs"]
    lines = [f"succeeded: RTDOSE {(outputs.get('rtdose') or {}).get('orthanc_id')} "
             f"(SOPInstanceUID {(outputs.get('rtdose') or {}).get('sop_instance_uid')})"]
    for key, what in (("rtdose", "RTDOSE"), ("letmap", "LETd map"), ("rtdose-effective", "RBE-weighted RTDOSE")):
        if outputs.get(key):
            lines.append(f"  {what}: {client.base_url}/app/explorer.html#instance?uuid={outputs[key]['orthanc_id']}")
    return _print(out, args, job, "\n".join(lines))


def _plan(client: RtClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    parameters = dict(prescription_gy=args.prescription, fractions=args.fractions, beam_count=args.beam_count,
                      gantry_angles_deg=args.gantry, beamlet_primaries=args.beamlet_primaries,
                      final_primaries=args.final_primaries)
    for item in args.param:
        name, _, value = item.partition("=")
        parameters[name] = _json_value(value)
    plan = client.request_plan(args.study, target_roi=args.target, workflow=args.workflow,
                               structure_set=args.structure_set, ct_series=args.ct_series, **parameters)
    if args.no_wait:
        return _print(out, args, plan, f"plan {plan['id']}: {plan['status']} (job {(plan['job'] or {}).get('id')})")
    if not args.json:
        print(f"plan {plan['id']}: {plan['workflow']}, {plan['target_roi']} (job {(plan['job'] or {}).get('id')})",
              file=out, flush=True)
    plan = _following(args, "plan", err, lambda report: client.wait_plan(plan["id"], on_progress=report,
                                                                          timeout_s=args.timeout))
    return _print(out, args, plan, "\n".join(plan_summary(plan, client.base_url)))


def plan_summary(plan: Plan, base_url: str) -> list[str]:
    """A finished plan in a few lines: its RTPLAN and RTDOSE, beams and the target's coverage."""
    qa, results = plan.get("qa") or {}, plan.get("results") or {}
    lines = [f"  RTPLAN: {base_url}/app/explorer.html#instance?uuid={results.get('rtplan', {}).get('orthanc_id')}",
             f"  RTDOSE: {base_url}/app/explorer.html#instance?uuid={results.get('rtdose', {}).get('orthanc_id')}"
             "  (overlay, DVH and metrics)"]
    if qa.get("beams"):
        gantry = ", ".join(f"{b['gantry_angle_deg']:g}" for b in qa["beams"])
        lines.append(f"  plan:   {len(qa['beams'])} beams (gantry {gantry}), {qa.get('layers')} layers, "
                     f"{qa.get('spots')} spots, {(qa.get('optimizer') or {}).get('iterations')} optimiser iterations")
    target = qa.get("target") or {}
    if target:
        lines.append(f"  {plan['target_roi']}: D95 {target['D95']:.3f} Gy, D2 {target['D2']:.3f} Gy, "
                     f"Dmean {target['Dmean']:.3f} Gy, V95% {target['V95%']:.1f} % "
                     f"(prescription {qa.get('prescription_gy', 0):g} Gy)")
    return lines


def _check(client: RtClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    requested = client.request_check(args.dose, with_dose=args.with_dose, primaries=args.primaries,
                                     dose_percent=args.dose_percent, distance_mm=args.distance_mm)
    if args.no_wait:
        return _print(out, args, requested, f"check {requested['check_id']}: {requested['job']['state']}")
    if not args.json:
        print(f"check {requested['check_id']} of RTDOSE {args.dose}", file=out, flush=True)
    _following(args, "check", err, lambda report: client.wait_job(requested["check_id"], on_progress=report,
                                                                   timeout_s=args.timeout))
    check = client.check(requested["check_id"])
    rate = check.get("pass_rate_percent")
    return _print(out, args, check, f"verdict: {check.get('verdict')}"
                                    f"{f', gamma pass rate {rate:.1f} %' if rate is not None else ''}"
                                    f"{' (' + check['reason'] + ')' if check.get('reason') else ''}\n"
                                    f"  report: {client.base_url}/rt/checks/{check['id']}/report.pdf")


def _jobs(client: RtClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    page = client.jobs(state=args.state, kind=args.kind, study=args.study, limit=args.limit, offset=args.offset)
    rows = [(j["id"], j["kind"], j["state"], j.get("stage") or "", f"{100 * (j.get('progress') or 0):.0f} %",
             j.get("updated_at") or "") for j in page["items"]]
    return _print(out, args, page, _table(("id", "kind", "state", "stage", "progress", "updated"), rows)
                  + f"\n{len(rows)} of {page['total']} jobs")


def _measurements(client: RtClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    filters = {name: getattr(args, name) for name in ("study", "series", "roi", "type", "metric", "dose", "job",
                                                      "sort", "source", "limit", "offset")}
    if args.csv:
        data = client.measurements_csv(**filters)
        if args.output:
            with open(args.output, "wb") as f:
                f.write(data)
            rows = max(data.count(b"\n") - 1, 0)  # the header line is not a row
            print(f"{rows} rows written to {args.output}", file=err)
        else:
            out.write(data.decode("utf-8"))
            out.flush()
        return 0
    page = client.measurements(**filters)
    rows = [(str(m["id"]), m["source"], m.get("roi_name") or "", m.get("metric") or m["type"],
             f"{m['value']:g} {m.get('unit') or ''}".rstrip(), m["study_instance_uid"]) for m in page["items"]]
    return _print(out, args, page, _table(("id", "source", "roi", "metric", "value", "study"), rows)
                  + f"\n{len(rows)} of {page['total']} measurements")


_COMMANDS: dict[str, Callable[[RtClient, argparse.Namespace, TextIO, TextIO], int]] = {
    "dose": _dose, "plan": _plan, "check": _check, "jobs": _jobs, "measurements": _measurements}


def _print(out: TextIO, args: argparse.Namespace, answer: Any, summary: str) -> int:
    print(json.dumps(answer, indent=2) if args.json else summary, file=out)
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in (header, *rows))


def _json_value(text: str) -> Any:
    """A --param value: JSON when it parses (numbers, lists, objects), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text

