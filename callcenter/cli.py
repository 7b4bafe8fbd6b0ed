"""The `callcenter` command line: parses arguments, loads settings once, runs one sub-command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from callcenter import logs, simulate_cmd, users_cmd
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

    conf = sub.add_parser("asterisk-conf", help="write or check the Asterisk configuration")
    target = conf.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="DIR", help="write the configuration here")
    target.add_argument("--check", type=Path, metavar="DIR", help="check an existing configuration")
    conf.add_argument("--force", action="store_true", help="overwrite existing files in --out")
    conf.add_argument("--flows", type=Path, metavar="DIR", help="flows (default: ivr.flows_dir)")

    prompts = sub.add_parser("prompts", help="IVR prompts")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", required=True)
    build = prompts_sub.add_parser("build", help="render the flows' text prompts for Asterisk")
    build.add_argument("--out", type=Path, metavar="DIR", help="default: ivr.prompt_cache_dir")
    build.add_argument("--flows", type=Path, metavar="DIR", help="flows (default: ivr.flows_dir)")

    ivr = sub.add_parser("ivr", help="IVR flows")
    ivr_sub = ivr.add_subparsers(dest="ivr_command", required=True)
    ivr_check = ivr_sub.add_parser("check", help="validate flow files; problems with file:line")
    ivr_check.add_argument("files", type=Path, nargs="+", metavar="FILE")
    ivr_check.add_argument(
        "--sounds",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="directory of sound files the prompts may name (repeatable)",
    )
    db = sub.add_parser("db", help="the records database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the records database to the newest schema")
    db_sub.add_parser("current", help="print the schema revision the database is at")
    sub.add_parser("settings", help="print the effective settings (secrets masked)")
    simulate_cmd.add_parser(sub)
    users_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return simulate_cmd.run(args)
    if args.command == "users":
        return users_cmd.run(args)
    try:
        settings = load_settings(args.config)
    except SettingsError as err:
        print(f"callcenter: bad settings: {err}", file=sys.stderr)
        return 2
    if args.command == "settings":
        _print_settings(settings)
        return 0
    if args.command == "asterisk-conf":
        from callcenter.asterisk_conf_cmd import check_config, write_config

        if args.check is not None:
            return check_config(settings, args.check, flows_dir=args.flows)
        return write_config(settings, args.out, overwrite=args.force, flows_dir=args.flows)
    if args.command == "prompts":
        from callcenter.prompts_cmd import build_prompts

        return build_prompts(settings, out_dir=args.out, flows_dir=args.flows)
    if args.command == "ivr":
        return _ivr_check(args.files, args.sounds)
    if args.command == "db":
        return _db(settings, args.db_command)
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


def _ivr_check(files: Sequence[Path], sounds: Sequence[Path]) -> int:
    from ivr.domain.flow_check import check_flow_file

    count = 0
    for path in files:
        for problem in check_flow_file(path, sounds):
            print(problem)
            count += 1
    print(f"{count} problem(s) in {len(files)} file(s)")
    return 1 if count else 0


def _db(settings: Settings, command: str) -> int:
    from tickets.errors import MigrationFailed
    from tickets.migrate import current_revision, head_revision, upgrade_sync

    url = settings.database.url.value
    try:
        if command == "upgrade":
            upgrade_sync(url)
            print(f"records database at schema revision {head_revision()}")
        else:
            current = asyncio.run(current_revision(url))
            print(f"{current or 'none'} (newest: {head_revision()})")
    except (MigrationFailed, OSError) as err:
        print(f"callcenter: {err}", file=sys.stderr)
        return 1
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
