"""Commands behind the `./orthanc-rt` launcher: start, stop, status, demo, and the user commands
(dose, plan, check, jobs, measurements: orthanc_rt.ops.commands)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import requests

from orthanc_rt.ops import commands, demo, stack
from orthanc_rt.ops.stack import StackConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./orthanc-rt")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="start Orthanc with the plugin, Redis if needed and the workers")
    sub.add_parser("stop", help="stop what this installation started")
    sub.add_parser("status", help="processes and /rt/health")
    sub.add_parser("supervise", help="restart what of this installation dies, in the foreground (`start` runs it "
                                     "in the background unless ORTHANC_RT_SUPERVISE=false)")
    run = sub.add_parser("run", help="run one service in the foreground (containers, systemd)")
    run.add_argument("service", choices=["orthanc", "worker"])
    demo = sub.add_parser("demo", help="start everything, store the demo case, plan it (IMPT) and wait for the "
                                       "RTPLAN and its RTDOSE")
    demo.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the plan (default 1800)")
    demo.add_argument("--beamlet-primaries", type=int, default=2000, help="protons per spot (default 2000)")
    demo.add_argument("--final-primaries", type=int, default=1_000_000, help="protons for the final dose")
    commands.add_commands(sub)
    parser.commands = sub.choices  # each command's own parser: its usage line for a bad option (`parse_args`)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, refused with the usage line of the command it names (exit 2) when an option is
    unknown: `./orthanc-rt dose --primaris 5` shows how `dose` is called, not the list of commands."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command in commands.NAMES:  # a user of a running Orthanc-RT, maybe on another host: no StackConfig
        return commands.run(args)
    cfg = StackConfig.from_env()

    if args.command == "start":
        health = stack.start(cfg)
        _print_started(cfg, health)
    elif args.command == "stop":
        stopped = stack.stop(cfg)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.command == "status":
        print(json.dumps({"processes": stack.status(cfg), "restarted_by_supervisor": stack.supervisor_record(cfg),
                          "health": _health(cfg)}, indent=2))
    elif args.command == "supervise":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        stack.supervise(cfg)
    elif args.command == "run":
        stack.exec_foreground(cfg, args.service)
    elif args.command == "demo":
        health = stack.start(cfg)
        _print_started(cfg, health)
        return demo.run(cfg, timeout_s=args.timeout, beamlet_primaries=args.beamlet_primaries,
                        final_primaries=args.final_primaries)
    return 0


def _print_started(cfg: StackConfig, health: dict[str, Any]) -> None:
    print(f"Orthanc-RT is running (data in {cfg.data_dir}, logs in {cfg.log_dir})")
    print(f"  Orthanc Explorer: {cfg.orthanc_url}/app/explorer.html")
    print(f"  health:           {cfg.orthanc_url}/rt/health  ({health['status']})")
    print(f"  DICOM (C-STORE):  AET ORTHANC_RT, port {cfg.dicom_port}")
    if stack.is_running(cfg, "viewer"):
        print(f"  OHIF viewer:      http://127.0.0.1:{cfg.viewer_port}/")
    print("  stop with:        ./orthanc-rt stop")


def _health(cfg: StackConfig) -> Any:
    try:
        return requests.get(f"{cfg.orthanc_url}/rt/health", timeout=5, auth=cfg.client_auth).json()
    except (requests.RequestException, ValueError) as exc:
        return {"status": "unreachable", "error": str(exc)}


if __name__ == "__main__":
    sys.exit(main())
