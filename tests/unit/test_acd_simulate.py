"""The simulator: Erlang C agreement on an M/M/N case, scenario files, the command's output."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from acd.domain.work import QueueId
from acd.simulate import (
    ScenarioError,
    load_scenario,
    main_simulate,
    parse_scenario,
    render_report,
    run_simulation,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_given_an_mmn_queue_when_simulated_then_asa_agrees_with_erlang_c() -> None:
    scenario = load_scenario(SCENARIOS / "mmn_single_skill.toml")
    assert scenario.max_items == 20_000
    report = run_simulation(scenario, seed=7)
    [comparison] = report.erlang
    prediction = comparison.prediction
    assert prediction.agents == 3
    assert prediction.load == pytest.approx(1.5)
    # The waits are autocorrelated, so the tolerance comes from the run's own batch means:
    # twice the 95 % half-width is about four standard errors.
    assert abs(comparison.simulated_asa - prediction.asa) <= 2 * comparison.asa_half_width
    assert comparison.asa_half_width < 0.2 * prediction.asa
    # P(wait) is a mean of indicators and far less noisy than the ASA.
    assert comparison.simulated_p_wait == pytest.approx(prediction.p_wait, abs=0.02)
    assert comparison.simulated_service_level == pytest.approx(prediction.service_level, abs=0.02)
    assert report.queues[QueueId("support")].abandoned == 0
    assert report.occupancy["support"] == pytest.approx(0.5, abs=0.02)


def small_day() -> dict[str, object]:
    return {
        "simulation": {"start": "08:00", "end": "09:00", "interval": 1800, "seed": 3},
        "queues": [
            {
                "id": "support",
                "skills": "support>=3",
                "arrivals": [
                    {"from": "08:00", "to": "08:30", "per_hour": 120},
                    {"from": "08:30", "to": "09:00", "per_hour": 240},
                ],
                "handle_time": {"dist": "exponential", "mean": 120},
                "patience": {"dist": "exponential", "mean": 60},
                "relax": [{"after": 20, "level_drop": 1}],
                "wrap_up": 10,
            },
            {
                "id": "chat",
                "channel": "chat",
                "skills": "chat",
                "arrivals": {"per_hour": 60},
                "handle_time": {"dist": "uniform", "low": 100, "high": 300},
            },
            {
                "id": "nobody",
                "skills": "klingon",
                "arrivals": {"per_hour": 30},
                "handle_time": {"dist": "constant", "mean": 60},
                "patience": {"dist": "constant", "mean": 30},
            },
        ],
        "agents": [
            {"prefix": "sup", "count": 4, "skills": {"support": 3}},
            {
                "prefix": "jun",
                "count": 2,
                "skills": {"support": 2},
                "shifts": [
                    {"from": "08:15", "to": "08:45"},
                ],
            },
            {
                "prefix": "chat",
                "count": 2,
                "skills": {"chat": 3},
                "capacity": {"call": 0, "chat": 3},
            },
        ],
    }


def test_given_a_small_day_when_simulated_then_every_figure_is_reported() -> None:
    scenario = parse_scenario(small_day())
    report = run_simulation(scenario)
    support, chat, nobody = (report.queues[QueueId(q)] for q in ("support", "chat", "nobody"))
    assert support.offered > 50
    assert support.answered + support.abandoned == support.offered
    assert chat.answered == chat.offered
    assert nobody.answered == 0
    assert nobody.abandoned == nobody.offered > 0
    assert nobody.service_level == 0.0
    assert 0 < report.occupancy["all"] < 1
    assert {index for index, _ in report.intervals} == {0, 1}
    assert set(report.erlang_skipped) == {"support", "chat", "nobody"}
    text = render_report(report)
    assert "support" in text
    assert "Erlang C support: not applicable" in text
    assert "08:30" in text


def test_the_same_seed_gives_the_same_report() -> None:
    scenario = parse_scenario(small_day())
    first = render_report(run_simulation(scenario, seed=11))
    assert render_report(run_simulation(scenario, seed=11)) == first
    assert render_report(run_simulation(scenario, seed=12)) != first


def test_the_multi_skill_day_scenario_runs_its_first_hour() -> None:
    scenario = load_scenario(SCENARIOS / "multi_skill_day.toml")
    assert sum(group.count for group in scenario.agents) == 500
    first_hour = dataclasses.replace(scenario, end=scenario.start + 3600, drain_limit=600)
    report = run_simulation(first_hour)
    assert report.agents == 500
    assert all(tally.offered > 0 for tally in report.queues.values())
    assert all(tally.answered > 0 for tally in report.queues.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["queues"][0].update(skills="support >="), "queues[0].skills"),
        (lambda d: d["queues"][0].update(channel="fax"), "queues[0].channel"),
        (lambda d: d["queues"][1].update(arrivals=[]), "queues[1].arrivals"),
        (lambda d: d["queues"][0]["relax"][0].update(after=-1), "queues[0].relax[0].after"),
        (lambda d: d["queues"][0].update(overflow={"after": 5, "to": "x"}), "queues[0].overflow"),
        (lambda d: d["agents"][0].update(skills={"support": 9}), "agents[0]"),
        (lambda d: d["simulation"].update(end="07:00"), "simulation.end"),
        (lambda d: d["simulation"].update(start="25:99"), "simulation.start"),
        (lambda d: d["queues"][2]["handle_time"].update(dist="pareto"), "handle_time.dist"),
    ],
)
def test_a_bad_scenario_names_the_key(change: object, message: str) -> None:
    data = small_day()
    change(data)  # type: ignore[operator]
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(data)


def test_main_simulate_prints_the_report_and_a_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "simulation: {max_items: 300, seed: 5}\n"
        "queues:\n"
        "  - id: q\n"
        "    arrivals: {per_hour: 60}\n"
        "    handle_time: {mean: 60}\n"
        "agents:\n"
        "  - {prefix: a, count: 2}\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    assert main_simulate(path, seed=None, out=out) == 0
    text = out.getvalue()
    assert "scenario tiny: seed 5" in text
    assert "Erlang C q: N=2" in text
    assert "100%" in capsys.readouterr().err


def test_main_simulate_reports_a_bad_file_and_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[simulation]\nmax_items = 10\n", encoding="utf-8")
    assert main_simulate(path, seed=1, out=io.StringIO()) == 2
    assert "queues" in capsys.readouterr().err
    assert main_simulate(tmp_path / "missing.toml", seed=1, out=io.StringIO()) == 2


def test_given_an_overflow_when_simulated_then_it_counts_out_of_the_source_and_in_the_target() -> (
    None
):
    data = {
        "simulation": {"start": "08:00", "end": "09:00", "interval": 3600, "seed": 5},
        "queues": [
            {
                "id": "french",
                "skills": "french",
                "arrivals": {"per_hour": 60},
                "handle_time": {"dist": "constant", "mean": 30},
                "overflow": {"after": 20, "to": "english"},
            },
            {
                "id": "english",
                "skills": "english",
                "arrivals": {"per_hour": 0},
                "handle_time": {"dist": "constant", "mean": 30},
                "wrap_up": 10,
            },
        ],
        "agents": [{"prefix": "en", "count": 3, "skills": {"english": 3}}],
    }
    report = run_simulation(parse_scenario(data))
    french, english = report.queues[QueueId("french")], report.queues[QueueId("english")]
    assert french.offered > 20
    assert french.overflowed == french.offered  # nobody speaks French: every call moves
    assert french.answered == 0
    assert english.offered == english.overflowed_in == french.offered
    assert english.answered == english.offered
    # the wait in english counts from the move; handle time is talk plus the queue's wrap-up
    assert english.asa < 1.0
    assert english.aht == pytest.approx(40.0, abs=0.01)
    text = render_report(report)
    assert f"{french.overflowed:>8}" in text.splitlines()[3]
