"""One exception hierarchy for Harken.

Each class also inherits the matching built-in, so callers that only know the
standard library (``except ValueError``) still catch the right things.
"""

from __future__ import annotations


class HarkenError(Exception):
    """Base class of every error Harken raises on purpose."""


class ConfigError(HarkenError, ValueError):
    """The configuration is invalid. ``problems`` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class ModelError(HarkenError, RuntimeError):
    """A model is missing, corrupt or cannot be loaded."""


class KnowledgeError(HarkenError, ValueError):
    """A knowledge pack or one of its documents cannot be read, installed or searched."""


class AudioError(HarkenError, RuntimeError):
    """Audio input or output failed (bad file, missing device, wrong format)."""


class ProtocolError(HarkenError, ValueError):
    """A malformed frame on a worker pipe."""


class WorkerError(HarkenError, RuntimeError):
    """A worker process failed a request or died while serving it."""

    def __init__(self, role: str, message: str) -> None:
        self.role = role
        super().__init__(f"{role} worker: {message}")


class WorkerDied(WorkerError):
    """The worker process exited while a request was in flight."""
