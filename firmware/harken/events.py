"""The event stream: every wake, transcript, reply, utterance summary, error and worker change.

Events are plain dicts with a ``type``, one of :class:`EventType`. The log stamps each with ``ts`` (wall
clock, for humans), writes it as one JSON line when a file is attached, and hands
it to subscribers (the CLI's printer, later the MQTT link). It keeps the most
recent :data:`HISTORY_LIMIT` events in memory (``history``) for summaries.

The ``type`` strings and the ``code`` of every ``error`` event (:class:`ErrorCode`) are a public
interface (events.jsonl, MQTT, ``harken run --events``): a member's value never changes. The dict
holds the plain string value, so the JSON on the wire is what it was when kinds were bare strings.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Callable

_LOGGER = logging.getLogger(__name__)

Subscriber = Callable[[dict[str, Any]], None]

HISTORY_LIMIT = 2000
"""Events kept in ``EventLog.history``; older ones are dropped, so a device that
runs for months holds a bounded amount (the file and the subscribers see all)."""


class EventType(enum.StrEnum):
    """The kind of an event: its ``type`` on the wire. Times ``t`` are seconds into the input."""

    WAKE = "wake"
    """The wake word was heard: ``t``, ``score``, ``model`` (the wake word model)."""
    TRANSCRIPT = "transcript"
    """What was heard: ``final`` (false for partials while someone speaks), ``text`` (wake-phrase remnants
    removed); a final one also has ``raw`` and ``t`` (end of speech)."""
    REPLY = "reply"
    """What the device said: ``text`` (the whole reply), ``interrupted`` (true after a barge-in); when a skill
    answered (not the language model), ``skill`` and ``intent``."""
    UTTERANCE = "utterance"
    """One question answered, with its timings: ``t``, ``transcript``, ``reply``, ``mode`` (``fast`` or
    ``realtime``), ``latency`` (seconds per stage, ``speculative``, ``asr_cleaning``); when a skill answered,
    ``skill`` and ``intent``, and ``latency`` has ``route`` (the router's decision) and ``skill_answer``."""
    BARGE_IN = "barge_in"
    """The answer was interrupted (wake word or button while thinking or speaking): ``t``, ``state``
    (what was interrupted), ``by`` (``wake`` or ``button``)."""
    TIMEOUT = "timeout"
    """Listening ended with no question: ``t``, ``reason`` (no speech after the wake word, input ended)."""
    ERROR = "error"
    """Something failed or could not be applied: ``code`` (an :class:`ErrorCode`), ``stage`` (``asr``,
    ``llm``, ``tts``, ``pipeline``, ``skills``, ``config``, ``models``, ``provisioning``, ``button``, ``panel``,
    or a worker role), ``message`` (free text for humans)."""
    CONFIG = "config"
    """A configuration trial was confirmed over the new link: ``change`` (e.g. ``mqtt.url``), ``outcome``
    (``confirmed``)."""
    WORKER = "worker"
    """A worker changed state: ``role``, ``state``, ``reason``, ``pid``; ``retry_in`` with ``backoff``;
    ``model``, ``nice``, ``load_s``, ``probe_s``, ``restarts`` when it becomes ready after its probe."""
    KNOWLEDGE = "knowledge"
    """A knowledge pack was installed or removed, or failed to be: ``action`` (``install``, ``remove``), ``pack``, ``ok``;
    ``reason`` when not ok; ``documents`` and ``passages`` for an install."""
    MODEL = "model"
    """A role's model changed or failed to: ``role``, ``action`` (``swap``, ``failover``, ``standby``,
    ``install``, ...), ``model``, ``ok``; ``reason`` when not ok (or why a failover); ``pid``, and for a swap
    ``previous``, ``mode``, ``gap_ms``, ``seconds``, ``standby``, ``old_kept``, ``bake_s``."""
    AUDIO = "audio"
    """A sound device's health changed: ``state`` (``deaf``, ``reopening``, ``ok``, ...), ``reason``,
    ``device``, ``stream`` (``capture`` or ``playback``)."""
    STATE = "state"
    """The conversation's state changed: ``state`` (``idle``, ``listening``, ``thinking``, ``speaking``), ``t``."""
    SPECULATION = "speculation"
    """An answer started at a short pause was dropped unheard (the speaker went on): ``t``, ``outcome``
    (``dropped``), ``reason``."""
    TURN = "turn"
    """The end-of-turn model's verdict at an endpoint: ``t``, ``probability``, ``outcome`` (``complete``,
    ``held``); after a held one, ``outcome`` ``resumed`` or ``max_pause`` with ``waited``."""
    MUTED = "muted"
    """The device was muted (wake words and presses ignored); no fields."""
    UNMUTED = "unmuted"
    """The device was unmuted; no fields."""
    BUTTON = "button"
    """A button gesture: ``gesture`` (``press``, ``long_press``, ``hold``, ``stuck``), ``action`` (what it
    did), ``held_s``."""
    LISTEN = "listen"
    """Push-to-talk from any source: ``by`` (``button``, ``control``, ``fleet``), ``outcome``."""
    REFUSED = "refused"
    """A question was not listened to: ``t``, ``reason`` (``too hot``)."""
    THERMAL = "thermal"
    """The thermal guard changed level: ``level`` (``normal``, ``hot``, ``critical``), ``celsius``."""
    READY = "ready"
    """The workers have settled and the device listens: the input (``input`` and ``seconds`` for a WAV file,
    or ``capture``/``playback``), ``degraded`` (roles given up), ``threads``."""
    TIMER = "timer"
    """A timer changed: ``action`` (``started``, ``cancelled``, ``paused``, ``resumed``, ``changed``, ``done``
    (it ended and rings), ``stopped`` (the ringing, ``by`` ``voice``, ``button``, ``control`` or ``fleet``), ``missed`` (it ended
    while the device was off), ``silenced`` (it rang ``[skills] ring_for`` unanswered)), ``id``, ``name``,
    ``seconds`` (its length), ``left``."""
    VOLUME = "volume"
    """The volume changed: ``level`` (0-100), ``muted``, ``mixer`` (``alsa`` or ``software``)."""


class ErrorCode(enum.StrEnum):
    """Why an ``error`` event was emitted: one stable kebab-case code per cause (its ``code``)."""

    ASR_FAILED = "asr-failed"
    """Stage ``asr``: speech recognition failed for a question; the device apologised instead of answering."""
    LLM_FAILED = "llm-failed"
    """Stage ``llm``: the language model failed while writing a reply; the device apologised."""
    TTS_FAILED = "tts-failed"
    """Stage ``tts``: the voice failed to synthesize the reply; the device apologised."""
    PIPELINE_FAILED = "pipeline-failed"
    """Stage ``pipeline``: an unexpected error while handling audio or answering (a bug); the device goes on."""
    WORKER_DOWN = "worker-down"
    """Stage: the worker's role (``wake``, ``asr``, ``llm``, ``tts``, ``skills``): a worker failed too often and was given
    up (FATAL); the role stays down until restarted."""
    MODEL_MISSING = "model-missing"
    """Stage ``models``: the model chosen on the device (a swap) is no longer installed; the configured
    model runs instead."""
    SELECTION_DAMAGED = "selection-damaged"
    """Stage ``models``: the record of the models chosen on the device cannot be read or is damaged; the
    configuration's models run."""
    SELECTION_NOT_SAVED = "selection-not-saved"
    """Stage ``models``: a model swap worked but could not be recorded; a restart would go back to the
    model from before."""
    CONFIG_REJECTED = "config-rejected"
    """Stage ``config``: the fleet's overrides do not load or failed to start the device too often; they
    were moved aside (and the last overrides that worked restored, if any)."""
    CONFIG_UNCONFIRMED = "config-unconfirmed"
    """Stage ``config``: a configuration change was not confirmed in time (or before a restart); the
    configuration from before it is back."""
    CONFIG_ROLLBACK_FAILED = "config-rollback-failed"
    """Stage ``config``: an unconfirmed configuration change could not be rolled back; the device keeps
    running what it has."""
    SETTING_CONFLICT = "setting-conflict"
    """Stage ``config``: settings that cannot work on this board (e.g. thermal limits, LED kind); the
    board profile's values are used instead."""
    SOUND_UNUSABLE = "sound-unusable"
    """Stage ``config``: a replacement earcon (``[sounds]``) cannot be used; the built-in tone plays instead."""
    PROVISIONING_INCOMPLETE = "provisioning-incomplete"
    """Stage ``provisioning``: first-boot provisioning could not apply something from the boot
    partition's harken.toml (or its report cannot be read)."""
    BUTTON_STUCK = "button-stuck"
    """Stage ``button``: the button was already held down at start; it is ignored until released."""
    PANEL_UNAVAILABLE = "panel-unavailable"
    """Stage ``panel``: the button or the status light could not be opened; the device runs without it."""
    KNOWLEDGE_FAILED = "knowledge-failed"
    """Stage ``knowledge``: a knowledge pack could not be searched (a damaged index: the message says which); the
    question went to the language model."""
    SKILL_FAILED = "skill-failed"
    """Stage ``skills``: a skill raised, ran out of memory or overran ``[workers] skills_deadline`` (the message
    names it); the person heard a short apology. A skill worker that overran is restarted."""
    SKILLS_INCOMPLETE = "skills-incomplete"
    """Stage ``skills``: a plugin or a sentence file could not be loaded, or the timers file was unreadable
    (set aside); everything else works."""


class Problem(str):
    """A problem found before it can be reported (at start): its message (a plain ``str`` everywhere a
    note was one) with the :class:`ErrorCode` its ``error`` event carries."""

    code: ErrorCode

    def __new__(cls, code: ErrorCode, message: str) -> Problem:
        self = super().__new__(cls, message)
        self.code = ErrorCode(code)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Problem, (self.code, str(self)))


class EventLog:
    def __init__(self, path: Path | None = None, history_limit: int = HISTORY_LIMIT) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, not {history_limit}")
        self._fh: IO[str] | None = path.open("w", encoding="utf-8") if path else None
        self._subscribers: list[Subscriber] = []
        self.history: deque[dict[str, Any]] = deque(maxlen=history_limit)
        """The most recent events, oldest first (iterate it; it is not a list)."""

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def emit(self, kind: EventType, **fields: Any) -> dict[str, Any]:
        """Record one event of ``kind``; ValueError for a kind that is not an :class:`EventType`."""
        event = {"type": EventType(kind).value, **fields, "ts": round(time.time(), 3)}  # the plain str on the wire
        self.history.append(event)
        if self._fh is not None:
            self._fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            self._fh.flush()
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:  # a broken subscriber must not break the pipeline
                _LOGGER.exception("event subscriber failed")
        return event

    def error(self, code: ErrorCode, stage: str, message: str, **fields: Any) -> dict[str, Any]:
        """Record an ``error`` event: its stable ``code``, the ``stage`` that failed, a ``message`` for humans."""
        return self.emit(EventType.ERROR, code=ErrorCode(code).value, stage=str(stage), message=str(message), **fields)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
