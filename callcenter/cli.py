"""The `callcenter` command line: parses arguments, loads settings once, runs one sub-command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from callcenter import logs
from callcenter.config import Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcenter", description=__doc__)
    parser.add_argument("--config", type=Path, help="settings TOML file (else $CALLCENTER_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="everything embedded: Redis, SQLite, the Asterisk simulator")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument(
        "--calls-per-minute", type=float, default=20.0, help="simulated call arrival rate"
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed for the callers")

    sub.add_parser("run", help="production node: your Asterisk, Redis and SQL database")
    sub.add_parser("settings", help="print the effective settings (secrets masked)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as err:
        print(f"callcenter: bad settings: {err}", file=sys.stderr)
        return 2
    if args.command == "settings":
        _print_settings(settings)
        return 0
    logs.configure(settings.log.level, as_json=settings.log.json)
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "demo":
            from callcenter.demo import DemoOptions, run_demo

            options = DemoOptions(
                duration=args.duration, calls_per_minute=args.calls_per_minute, seed=args.seed
            )
            return asyncio.run(run_demo(settings, options))
        if args.command == "run":
            from callcenter.node import run_production

            return asyncio.run(run_production(settings))
    return 0


def _print_settings(settings: Settings) -> None:
    for section in dataclasses.fields(settings):
        print(f"[{section.name}]")
        values = getattr(settings, section.name)
        for item in dataclasses.fields(values):
            print(f"{item.name} = {getattr(values, item.name)!s}")
        print()


if __name__ == "__main__":
    raise SystemExit(main())
