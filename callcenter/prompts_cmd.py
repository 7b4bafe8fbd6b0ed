"""`callcenter prompts build`: renders the IVR flows' text prompts into Asterisk's sounds folder.

Every text prompt of every flow (`ivr.flows_dir`, else `ivr/flows/*.yaml`; or `--flows DIR`),
in every language a call through that flow can speak (the flow's language, the prompt texts'
languages, the languages its `set` and `queue` steps switch to), is rendered into
`ivr.prompt_cache_dir` (or `--out DIR`) exactly as the IVR renders it during a call
(`ivr.adapters.prompt_renderer`: espeak-ng, the same text and voice, the same content-hash
file name), so the IVR finds it ready and never runs espeak-ng on a live call.
Next to each `<hash>.wav` (8 kHz signed linear) go `<hash>.ulaw` and `<hash>.alaw`, so that
Asterisk plays G.711 calls without transcoding (`asterisk_conf.sound_formats`).

The command is idempotent: a prompt whose files are all there is left alone and reported as
unchanged. Texts with `{placeholders}` (a caller's number, a ticket's status) depend on the
call and are rendered during it; they are listed, not built. Flows with problems stop the
command before anything is written; a prompt espeak-ng cannot render is reported and the
others are still built (exit status 1).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from asterisk_conf.sound_formats import G711_FORMATS
from asterisk_sim.audio import AudioFormatError, read_wav_pcm
from callcenter.asterisk_conf_cmd import settings_flows
from callcenter.config import Settings
from ivr.adapters.prompt_renderer import EspeakMissingError, PromptRenderer, PromptRenderError
from ivr.domain.flow import Flow, QueueStep, SetStep

__all__ = ["PromptJob", "build_prompts", "prompt_jobs"]

PARALLEL_RENDERS = 4
_PLACEHOLDER_START = "{"


@dataclass(frozen=True, slots=True, order=True)
class PromptJob:
    """One text prompt of one flow in one language."""

    flow: str
    prompt: str
    language: str
    text: str

    @property
    def per_call(self) -> bool:
        """Whether the text depends on the call (`{placeholder}`), so cannot be built ahead."""
        return _PLACEHOLDER_START in self.text

    def __str__(self) -> str:
        return f"flow {self.flow}, prompt {self.prompt}, {self.language}"


def flow_languages(flow: Flow) -> list[str]:
    """Every language a call through `flow` can speak, the flow's own first."""
    languages = [flow.language]
    for prompt in flow.prompts.values():
        languages += prompt.texts
    for step in flow.steps.values():
        if isinstance(step, SetStep | QueueStep) and step.language:
            languages.append(step.language)
    return list(dict.fromkeys(languages))


def prompt_jobs(flows: Mapping[str, Flow]) -> list[PromptJob]:
    """Every (flow, prompt, language) with the text the IVR would speak, sorted."""
    jobs = set()
    for flow in flows.values():
        languages = flow_languages(flow)
        for name, prompt in flow.prompts.items():
            for language in languages:
                text = prompt.text_for(language, flow.language)
                if text.strip():
                    jobs.add(PromptJob(flow.name, name, language, text))
    return sorted(jobs)


def default_out_dir(settings: Settings) -> Path:
    """Where the IVR looks for rendered prompts (`ivr.prompt_cache_dir`); Asterisk reads it."""
    return Path(settings.ivr.prompt_cache_dir)


def build_prompts(
    settings: Settings,
    *,
    out_dir: Path | None = None,
    flows_dir: Path | None = None,
    espeak: str = "espeak-ng",
    out: TextIO | None = None,
) -> int:
    """Render and install; 0 when every prompt is built, 1 when some failed, 2 on bad input."""
    out = out or sys.stdout
    target = out_dir or default_out_dir(settings)
    flows, problems = settings_flows(settings, flows_dir)
    if problems:
        for problem in problems:
            print(f"callcenter prompts build: {problem}", file=sys.stderr)
        print("callcenter prompts build: nothing written (fix the flows first)", file=sys.stderr)
        return 2
    try:
        target.mkdir(parents=True, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(f"{target} is not writable")
    except OSError as err:
        print(f"callcenter prompts build: cannot write into {target}: {err}", file=sys.stderr)
        return 2
    jobs = prompt_jobs(flows)
    renderer = PromptRenderer(target, espeak)
    results = asyncio.run(_build_all(renderer, [j for j in jobs if not j.per_call]))
    missing = next((r.error for r in results if r.espeak_missing), None)
    if missing is not None:
        print(f"callcenter prompts build: {missing}", file=sys.stderr)
        return 2
    return _report(target, jobs, results, out)


@dataclass(frozen=True, slots=True)
class _Result:
    job: PromptJob
    written: tuple[Path, ...] = ()
    unchanged: tuple[Path, ...] = ()
    error: str = ""
    espeak_missing: bool = False


async def _build_all(renderer: PromptRenderer, jobs: list[PromptJob]) -> list[_Result]:
    limit = asyncio.Semaphore(PARALLEL_RENDERS)

    async def one(job: PromptJob) -> _Result:
        async with limit:
            return await _build_one(renderer, job)

    return list(await asyncio.gather(*(one(job) for job in jobs)))


async def _build_one(renderer: PromptRenderer, job: PromptJob) -> _Result:
    wav = renderer.cached_path(job.text, job.language)
    had_wav = wav.is_file()
    try:
        await renderer.render(job.text, job.language)
        extra_written, extra_unchanged = await asyncio.to_thread(_install_g711, wav)
    except EspeakMissingError as err:
        # reported once by the caller; every job still ends normally, so none leaves a file
        return _Result(job, error=str(err), espeak_missing=True)
    except (PromptRenderError, AudioFormatError, OSError) as err:
        return _Result(job, error=str(err))
    written = extra_written if had_wav else (wav, *extra_written)
    unchanged = (wav, *extra_unchanged) if had_wav else extra_unchanged
    return _Result(job, written, unchanged)


def _install_g711(wav: Path) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """Write `<stem>.ulaw` / `<stem>.alaw` from `wav` where missing or older (atomically)."""
    written: list[Path] = []
    unchanged: list[Path] = []
    pcm: bytes | None = None
    for extension, encode in G711_FORMATS.items():
        path = wav.with_suffix(f".{extension}")
        if path.is_file() and path.stat().st_mtime >= wav.stat().st_mtime:
            unchanged.append(path)
            continue
        if pcm is None:
            pcm = read_wav_pcm(wav)
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            temp.write_bytes(encode(pcm))
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        written.append(path)
    return tuple(written), tuple(unchanged)


def _report(target: Path, jobs: Iterable[PromptJob], results: list[_Result], out: TextIO) -> int:
    failed = 0
    files_written = 0
    built = 0
    for result in results:
        if result.error:
            failed += 1
            print(f"failed    {result.job}: {result.error}", file=out)
            continue
        built += 1
        if result.written:
            files_written += len(result.written)
            kinds = " ".join(p.suffix for p in result.written)
            print(f"wrote     {result.job}: {result.written[0].stem} ({kinds})", file=out)
        else:
            print(f"unchanged {result.job}: {result.unchanged[0].stem}", file=out)
    per_call = [job for job in jobs if job.per_call]
    for job in per_call:
        print(f"per call  {job}: has placeholders, rendered during the call", file=out)
    print(
        f"{built} prompt(s) ready in {target} ({files_written} file(s) written), "
        f"{len(per_call)} rendered per call, {failed} failed",
        file=out,
    )
    return 1 if failed else 0
