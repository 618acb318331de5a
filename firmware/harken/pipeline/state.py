"""One turn of the conversation, as the listening half hands it to the answering half:
the state the device is in, the request's audio and its timestamps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass
class Request:
    """A request's audio, cut from the ring buffer."""

    start: int
    audio: np.ndarray
    """From the end of the wake phrase to the end of speech."""
    whole: np.ndarray | None = None
    """With no pause after the wake phrase: the same speech from its start, phrase included."""
    whole_start: int | None = None
    """Input sample where ``whole`` starts."""


@dataclass
class Utterance:
    """Timestamps of one request; latencies are derived from them."""

    speech_end: int
    endpoint_at: int
    endpoint_mono: float
    marks: dict[str, float] = field(default_factory=dict)
    first_audio_at: int | None = None
    speculative: bool = False
    """Started at a short pause, before the endpoint confirmed it."""
    cleaning_s: float | None = None
    """Time the final transcription spent cleaning audio ([asr] denoise) not cleaned while it was spoken."""
