"""Simulator benchmark: one day of a 500-agent center, and the gap to Erlang C over 100k calls.

Run ``python -m bench.simulate`` (``--help`` for options).

* ``scenarios/multi_skill_day.toml``: 500 agents with shifts, six queues (calls in two
  languages, overflow, relaxation, chats, emails), 08:00-20:00; prints the wall time against
  the goal (< 30 s) and the per-queue summary.
* ``scenarios/mmn_single_skill.toml`` stretched to ``--calls`` calls (default 100,000): prints
  the simulated ASA, the Erlang C ASA, the gap and the run's own 95 % confidence half-width
  (batch means) against the goal (within 5 %). P(wait) and the service level are printed too:
  they are much less noisy than the ASA.

Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from acd.simulate import load_scenario, render_report, run_simulation

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
GOAL_DAY_SECONDS = 30.0
GOAL_ASA_GAP = 0.05


def day(seed: int | None) -> None:
    scenario = load_scenario(SCENARIOS / "multi_skill_day.toml")
    started = time.perf_counter()
    report = run_simulation(scenario, seed=seed)
    elapsed = time.perf_counter() - started
    print(
        f"one day, {report.agents} agents, {report.items} items: {elapsed:.1f} s wall "
        f"(goal < {GOAL_DAY_SECONDS:g} s)"
    )
    header, queues = render_report(report).split("\n\n")[:2]
    print("  " + (header + "\n" + queues).replace("\n", "\n  "))


def mmn(calls: int, seed: int | None) -> None:
    scenario = load_scenario(SCENARIOS / "mmn_single_skill.toml")
    scenario = dataclasses.replace(scenario, max_items=calls)
    started = time.perf_counter()
    report = run_simulation(scenario, seed=seed)
    elapsed = time.perf_counter() - started
    [comparison] = report.erlang
    p = comparison.prediction
    print(
        f"M/M/{p.agents}, A = {p.load:.2f} E, {report.items} calls: {elapsed:.1f} s wall "
        f"({report.items / elapsed:,.0f} calls/s)"
    )
    print(
        f"  ASA      Erlang C {p.asa:7.2f} s   simulated {comparison.simulated_asa:7.2f} s "
        f"± {comparison.asa_half_width:.2f} (95 %)   gap {comparison.asa_gap:+.1%} "
        f"(goal within {GOAL_ASA_GAP:.0%})"
    )
    print(f"  P(wait)  Erlang C {p.p_wait:7.1%}     simulated {comparison.simulated_p_wait:7.1%}")
    print(
        f"  SL {scenario.threshold:g} s  Erlang C {p.service_level:7.1%}     "
        f"simulated {comparison.simulated_service_level:7.1%}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="default: the scenario's seed")
    args = parser.parse_args(argv)
    day(args.seed)
    mmn(args.calls, args.seed)


if __name__ == "__main__":
    main()
