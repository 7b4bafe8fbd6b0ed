"""`callcenter prompts build` with the real espeak-ng: files, formats, idempotence, bad input."""

from __future__ import annotations

import io
import os
import shutil
import wave
from pathlib import Path

import pytest

from callcenter.cli import main
from callcenter.config import Settings
from callcenter.prompts_cmd import build_prompts, prompt_jobs
from ivr.adapters.prompt_renderer import PromptRenderer
from ivr.service import FLOWS_DIR, load_flows

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None and not os.environ.get("CI"),
        reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
    ),
]

FLOW = """\
name: desk
start: hello
language: en
prompts:
  hello:
    en: "Hello."
    fr: "Bonjour."
  call-back: "We will call you back on {callback_number}."
steps:
  hello:
    type: play
    prompts: [hello, call-back]
    next: queue
  queue:
    type: queue
    queue: desk
    language: {queue_language}
"""


def flows_dir(tmp_path: Path, queue_language: str = "de") -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    text = FLOW.replace("{queue_language}", queue_language)
    (folder / "desk.yaml").write_text(text, encoding="utf-8")
    return folder


def build(tmp_path: Path, flows: Path, **kwargs: object) -> tuple[int, str, Path]:
    out_dir = tmp_path / "sounds"
    report = io.StringIO()
    code = build_prompts(
        Settings(),
        out_dir=out_dir,
        flows_dir=flows,
        out=report,
        **kwargs,  # type: ignore[arg-type]
    )
    return code, report.getvalue(), out_dir


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir())}


def test_given_flows_when_built_then_each_text_prompt_is_where_the_ivr_renderer_looks(
    tmp_path: Path,
) -> None:
    code, report, out_dir = build(tmp_path, flows_dir(tmp_path))
    assert code == 0, report
    renderer = PromptRenderer(out_dir)
    # the flow's languages (en, fr) and the one its queue step switches to (de, English text)
    for text, language in (("Hello.", "en"), ("Bonjour.", "fr"), ("Hello.", "de")):
        wav = renderer.cached_path(text, language)
        assert wav.is_file(), (text, language)
        with wave.open(str(wav), "rb") as sound:
            assert (sound.getframerate(), sound.getnchannels(), sound.getsampwidth()) == (
                8000,
                1,
                2,
            )
            frames = sound.getnframes()
        assert frames > 800  # more than 0.1 s of speech
        for extension in ("ulaw", "alaw"):  # one byte per 8 kHz sample
            assert wav.with_suffix(f".{extension}").stat().st_size == frames
        assert f"wrote     flow desk, prompt hello, {language}: {wav.stem} (.wav .ulaw .alaw)" in (
            report
        )
    assert len(list(out_dir.iterdir())) == 9
    assert "3 prompt(s) ready" in report
    assert "(9 file(s) written)" in report


def test_given_built_prompts_when_built_again_then_nothing_is_written(tmp_path: Path) -> None:
    flows = flows_dir(tmp_path)
    first, _, out_dir = build(tmp_path, flows)
    before = snapshot(out_dir)
    second, report, _ = build(tmp_path, flows)
    assert (first, second) == (0, 0)
    assert snapshot(out_dir) == before
    assert report.count("unchanged flow desk, prompt hello") == 3
    assert "(0 file(s) written)" in report


def test_given_a_lost_g711_file_when_built_again_then_only_it_is_written(tmp_path: Path) -> None:
    flows = flows_dir(tmp_path)
    build(tmp_path, flows)
    out_dir = tmp_path / "sounds"
    lost = sorted(out_dir.glob("*.ulaw"))[0]
    lost.unlink()
    code, report, _ = build(tmp_path, flows)
    assert code == 0
    assert lost.is_file()
    assert f"{lost.stem} (.ulaw)" in report
    assert "(1 file(s) written)" in report


def test_given_a_text_with_placeholders_then_it_is_listed_as_rendered_per_call(
    tmp_path: Path,
) -> None:
    code, report, out_dir = build(tmp_path, flows_dir(tmp_path))
    assert code == 0
    for language in ("de", "en", "fr"):
        assert (
            f"per call  flow desk, prompt call-back, {language}: has placeholders, "
            "rendered during the call"
        ) in report
    renderer = PromptRenderer(out_dir)
    template = "We will call you back on {callback_number}."
    assert not renderer.cached_path(template, "en").exists()


def test_given_a_language_espeak_has_no_voice_for_then_it_fails_and_the_rest_is_built(
    tmp_path: Path,
) -> None:
    code, report, out_dir = build(tmp_path, flows_dir(tmp_path, queue_language="xx"))
    assert code == 1
    assert "failed    flow desk, prompt hello, xx: espeak-ng failed for voice 'xx'" in report
    assert "2 prompt(s) ready" in report
    assert "1 failed" in report
    assert len(list(out_dir.glob("*.wav"))) == 2
    assert not list(out_dir.glob(".*"))  # no temporary file left behind


def test_given_a_flow_with_a_problem_when_built_then_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = flows_dir(tmp_path)
    (flows / "broken.yaml").write_text("name: broken\nstart: nowhere\nsteps: {}\n")
    code, report, out_dir = build(tmp_path, flows)
    assert code == 2
    assert report == ""
    assert not out_dir.exists()
    err = capsys.readouterr().err
    assert "broken.yaml:" in err
    assert "nothing written" in err


def test_given_no_espeak_when_built_then_the_error_names_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, out_dir = build(tmp_path, flows_dir(tmp_path), espeak="no-such-espeak-ng")
    assert code == 2
    assert "apt-get install espeak-ng" in capsys.readouterr().err
    assert not list(out_dir.glob("*.wav"))


def test_given_an_unwritable_sounds_folder_when_built_then_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "sounds"
    blocker.write_text("a file, not a folder")
    code, _, _ = build(tmp_path, flows_dir(tmp_path))
    assert code == 2
    assert f"cannot write into {blocker}" in capsys.readouterr().err
    assert blocker.read_text() == "a file, not a folder"


def test_given_the_cli_when_prompts_build_runs_then_the_shipped_flows_are_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "sounds"
    assert main(["prompts", "build", "--out", str(out_dir)]) == 0
    flows, problems = load_flows(FLOWS_DIR)
    assert not problems
    jobs = [job for job in prompt_jobs(flows) if not job.per_call]
    renderer = PromptRenderer(out_dir)
    assert {renderer.cached_path(j.text, j.language) for j in jobs} == set(out_dir.glob("*.wav"))
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"{len(jobs)} prompt(s) ready in {out_dir}")


def test_given_ivr_settings_when_built_without_options_then_their_folders_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "ivr-prompt-cache"
    monkeypatch.setenv("CALLCENTER_IVR_FLOWS_DIR", str(flows_dir(tmp_path)))
    monkeypatch.setenv("CALLCENTER_IVR_PROMPT_CACHE_DIR", str(cache))
    assert main(["prompts", "build"]) == 0
    renderer = PromptRenderer(cache)  # what the node's IVR uses (callcenter/services.py)
    assert renderer.cached_path("Bonjour.", "fr").is_file()
    assert len(list(cache.glob("*.wav"))) == 3
