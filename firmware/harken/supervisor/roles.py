"""What a worker role is, in one table: its engine, its model setting, the settings it gets,
its watchdog deadline and the sentence said when it is given up.

The four engine roles each have a model and a slot (``slots.py``: swaps, standbys).
The skills worker (``SERVICES``) has no model: it runs skill handlers, plugins
included, under the same watchdog, so that one that hangs or crashes is only that.

Each role runs in its own worker process (``harken.supervisor.child``), which loads
``harken.engines.<engine>`` and is sent only the settings sections listed here (never
the MQTT credentials). Its readiness probe is in ``probes.PROBES``: a probe drives the
worker, so it lives with the worker clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from harken.config import ASR_DEFAULT, MODEL_KEYS, Settings


@dataclass(frozen=True)
class Role:
    name: str
    engine: str
    """Module under ``harken.engines`` whose ``load(settings, data_dir)`` builds the engine."""
    sections: tuple[str, ...]
    """Settings sections the worker needs; ``threads``, ``priority`` and ``board`` (its accelerators) are sent to every role."""
    notice: str | None
    """Said once when the role is given up (FATAL); None: nothing can be said (TTS)."""

    @property
    def has_model(self) -> bool:
        return self.name in MODEL_KEYS.values()

    @property
    def model_key(self) -> tuple[str, str]:
        """The setting (section, key) that names the role's model (``config.MODEL_KEYS``)."""
        return next(key for key, role in MODEL_KEYS.items() if role == self.name)

    def model(self, settings: Settings) -> str:
        """The model the role's setting names; for speech recognition left to the board (empty) where no board
        profile chose one (``hw.board.choose_asr``, done at start), the default."""
        if not self.has_model:
            return ""
        section, key = self.model_key
        return str(getattr(getattr(settings, section), key)) or (ASR_DEFAULT if self.name == "asr" else "")

    def deadline(self, settings: Settings) -> float:
        return float(getattr(settings.workers, f"{self.name}_deadline"))

    def settings_part(self, settings: Settings) -> dict[str, object]:
        """The sections this role's worker gets, as :func:`harken.config.to_dict` would give them."""
        from harken import config

        whole = config.to_dict(settings)
        return {name: whole[name] for name in (*self.sections, "threads", "priority", "board")}


ROLES: dict[str, Role] = {
    "wake": Role("wake", "listener", ("wake", "listen"),
                 "My wake word detector has stopped working, so I cannot hear you. Please check the device."),
    "asr": Role("asr", "asr", ("asr",),
                "My speech recognition has stopped working, so I cannot understand you right now."),
    "llm": Role("llm", "llm", ("llm",),
                "My language model has stopped working, so I cannot answer questions right now."),
    "tts": Role("tts", "tts", ("tts",), None),
    "skills": Role("skills", "skillset", ("skills", "device"),
                   "My skills have stopped working, so I cannot tell the time or do sums right now."),
}
"""Every role, in the order the workers start and are shown."""

MODEL_ROLES = tuple(name for name, role in ROLES.items() if role.has_model)
"""The roles with a model (and so a slot); the others are services (``SERVICES``)."""
SERVICES = tuple(name for name in ROLES if name not in MODEL_ROLES)
