"""Text prompts to sound files Asterisk can play: espeak-ng once, then a content-hash cache.

``render(text, language)`` runs ``espeak-ng -v <voice> -b 1 -w <tmp>.wav`` with the text on
standard input (so a text starting with ``-`` is never read as an option), within ``timeout``
seconds, converts the result to 8 kHz mono signed 16-bit WAV (the format Asterisk plays without
transcoding, README section 4.5 of the traces) and stores it as
``<cache_dir>/<sha256(language, voice, text)>.wav``. A second render of the same text is a
cache hit (no subprocess); concurrent renders of one text share one subprocess. Files appear
atomically (written to a temporary name, then renamed), so Asterisk never plays half a file.
The conversion (pure Python) runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from asterisk_sim.audio import AudioFormatError, read_wav_pcm, write_wav
from ivr.errors import IvrError

__all__ = ["EspeakMissingError", "PromptRenderError", "PromptRenderer"]

_log = logging.getLogger(__name__)


class PromptRenderError(IvrError):
    """A text prompt could not be rendered to a sound file."""

    error_id = "ivr-prompt-render-failed"


class EspeakMissingError(PromptRenderError):
    """The espeak-ng program is not installed."""

    error_id = "ivr-espeak-missing"


class PromptRenderer:
    """Renders text prompts with espeak-ng into a cache directory of 8 kHz WAV files."""

    def __init__(
        self,
        cache_dir: str | Path,
        espeak: str = "espeak-ng",
        *,
        voices: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._dir = Path(cache_dir)
        self._espeak = espeak
        self._voices = dict(voices or {})
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[Path]] = {}
        self.renders = 0  # subprocesses run (cache misses), for tests and stats

    @property
    def cache_dir(self) -> Path:
        return self._dir

    def voice_for(self, language: str) -> str:
        """The espeak-ng voice for a language: configured, else the language itself."""
        return self._voices.get(language) or language.replace("_", "-") or "en"

    def cached_path(self, text: str, language: str) -> Path:
        """Where the rendering of ``text`` in ``language`` is (or will be) stored."""
        voice = self.voice_for(language)
        key = hashlib.sha256(f"{language}\x00{voice}\x00{text}".encode()).hexdigest()
        return self._dir / f"{key}.wav"

    async def render(self, text: str, language: str) -> Path:
        """The WAV file for ``text`` (with its ``.wav`` extension), rendering it if needed."""
        path = self.cached_path(text, language)
        key = str(path)
        while (pending := self._pending.get(key)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this task was cancelled, not the render it waited for
        if path.is_file():
            return path
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await self._render(text, self.voice_for(language), path)
        except asyncio.CancelledError:
            future.cancel()  # waiters start their own render
            raise
        except Exception as err:
            future.set_exception(err)
            future.exception()  # retrieved: there may be no waiter
            raise
        else:
            future.set_result(path)
        finally:
            del self._pending[key]
        return path

    async def _render(self, text: str, voice: str, path: Path) -> None:
        raw = await asyncio.to_thread(_temp_wav, self._dir)
        try:
            await self._run_espeak(text, voice, raw)
            await asyncio.to_thread(_convert, raw, path)
        finally:
            await asyncio.to_thread(raw.unlink, missing_ok=True)
        self.renders += 1
        _log.debug("rendered prompt %s (voice %s, %d chars)", path.name, voice, len(text))

    async def _run_espeak(self, text: str, voice: str, out: Path) -> None:
        argv = [self._espeak, "-v", voice, "-b", "1", "-w", str(out)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as err:
            raise EspeakMissingError(
                f"{self._espeak!r} not found: install the Debian package espeak-ng "
                "(apt-get install espeak-ng) to render text prompts"
            ) from err
        try:
            async with asyncio.timeout(self._timeout):
                _, stderr = await proc.communicate(text.encode("utf-8"))
        except TimeoutError as err:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise PromptRenderError(
                f"espeak-ng did not finish within {self._timeout:g} s (voice {voice})"
            ) from err
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            message = stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
            raise PromptRenderError(f"espeak-ng failed for voice {voice!r}: {message}")


def _temp_wav(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".espeak-", suffix=".wav", dir=directory)
    os.close(fd)
    return Path(name)


def _convert(raw: Path, path: Path) -> None:
    """espeak-ng's WAV (22.05 kHz) to 8 kHz mono s16le WAV at ``path``, atomically."""
    try:
        pcm = read_wav_pcm(raw)
    except AudioFormatError as err:
        raise PromptRenderError(f"espeak-ng wrote an unreadable WAV: {err}") from err
    if not pcm:
        raise PromptRenderError("espeak-ng produced no audio")
    tmp = path.with_name(f".{path.name}.tmp")
    write_wav(tmp, pcm)
    os.replace(tmp, path)
