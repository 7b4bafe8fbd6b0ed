"""The ``callcenter simulate SCENARIO`` sub-command: staffing what-if in virtual time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the CLI's sub-parsers."""
    simulate = sub.add_parser(
        "simulate",
        help="staffing what-if: the real routing engine in virtual time (scenarios/*.toml)",
    )
    simulate.add_argument("scenario", type=Path, metavar="SCENARIO", help="TOML or YAML file")
    simulate.add_argument("--seed", type=int, default=None, help="default: the scenario's seed")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the simulation: progress bar on stderr, report on ``out``; 2 for a bad scenario."""
    from acd.simulate import main_simulate

    return main_simulate(args.scenario, seed=args.seed, out=out or sys.stdout)
