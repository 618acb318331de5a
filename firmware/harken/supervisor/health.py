"""Each worker's health as an explicit state machine.

    STARTING ──loaded──▶ PROBING ──probed──▶ READY ──request──▶ BUSY
        ▲                                     ▲ ◀────idle────────┘
        └──retry── BACKOFF ◀──failed── (STARTING, PROBING, READY, BUSY)
                        └──failed, N failures in the window──▶ FATAL
    any live state ──stop──▶ STOPPING ──stopped──▶ STOPPED

Every transition goes through :meth:`Health.fire`, which rejects transitions the
table does not allow, and reports each change to one callback (which turns it
into a ``worker`` event). The clock is injectable so that the backoff policy
can be tested without waiting.
"""

from __future__ import annotations

import collections
import enum
import time
from dataclasses import dataclass
from typing import Callable


class WorkerState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    PROBING = "probing"
    READY = "ready"
    BUSY = "busy"
    BACKOFF = "backoff"
    FATAL = "fatal"
    STOPPING = "stopping"


S = WorkerState
LIVE = (S.STARTING, S.PROBING, S.READY, S.BUSY)

TRANSITIONS: dict[tuple[WorkerState, str], WorkerState] = {
    (S.STOPPED, "start"): S.STARTING,  # the supervisor starts the worker
    (S.FATAL, "start"): S.STARTING,  # an operator's explicit restart of a role given up
    (S.BACKOFF, "retry"): S.STARTING,  # the backoff delay is over
    (S.STARTING, "loaded"): S.PROBING,  # the process said ready: its model is loaded
    (S.PROBING, "probed"): S.READY,  # the golden probe passed: it may serve
    (S.READY, "request"): S.BUSY,  # a request is outstanding
    (S.BUSY, "idle"): S.READY,  # nothing outstanding for a moment
    **{(state, "stop"): S.STOPPING for state in (*LIVE, S.BACKOFF, S.FATAL)},  # shutdown, from anywhere
    (S.STOPPING, "stopped"): S.STOPPED,  # the process is gone
}
"""(state, event) → next state. ``failed`` is decided by the policy (BACKOFF or FATAL)."""


@dataclass(frozen=True)
class Policy:
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    max_failures: int = 5
    failure_window: float = 300.0

    def delay(self, failures: int) -> float:
        """Wait before the restart that follows the ``failures``-th failure in the window.

        The first failure is restarted at once (a one-off crash should cost only the
        model's load time); from the second on, the wait doubles up to the cap."""
        if failures <= 1:
            return 0.0
        return min(self.backoff_cap, self.backoff_initial * 2 ** (failures - 2))


Listener = Callable[["Health", WorkerState, WorkerState, str], None]


class IllegalTransition(RuntimeError):
    pass


class Health:
    def __init__(self, role: str, policy: Policy, on_change: Listener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.role = role
        self.policy = policy
        self.clock = clock
        self.on_change = on_change
        self.state = S.STOPPED
        self.reason = ""
        self.since = clock()
        self.failures: collections.deque[float] = collections.deque()
        self.restarts = 0
        """Starts after the first one (restarts after failures, and explicit restarts)."""
        self.retry_at: float | None = None
        """In BACKOFF: when the next start is due (clock time)."""
        self._started_once = False

    def fire(self, event: str, reason: str = "") -> WorkerState:
        """Apply an event; return the new state. ``failed`` goes to BACKOFF or FATAL."""
        if event == "failed":
            if self.state not in LIVE:
                raise IllegalTransition(f"{self.role}: 'failed' in state {self.state.value}")
            return self._fail(reason, permanent=False)
        if event == "fatal":  # a failure that retrying cannot mend (corrupt model, bad config)
            if self.state not in LIVE:
                raise IllegalTransition(f"{self.role}: 'fatal' in state {self.state.value}")
            return self._fail(reason, permanent=True)
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise IllegalTransition(f"{self.role}: '{event}' is not allowed in state {self.state.value}")
        if target is S.STARTING:
            if self._started_once:
                self.restarts += 1
            self._started_once = True
            if self.state is S.FATAL:
                self.failures.clear()
        self.retry_at = None
        self._move(target, reason)
        return target

    def room_for_restart(self) -> bool:
        """Whether one more unsigned restart request (Home Assistant's button) fits in the failure
        window without giving the worker up: such requests must never make a role FATAL."""
        self._prune(self.clock())
        return len(self.failures) + 1 < self.policy.max_failures

    def note_restart(self) -> None:
        """Count an unsigned restart request in the failure window, as a failure (check
        :meth:`room_for_restart` first). Not a transition: the restart itself goes through stop and start."""
        self.failures.append(self.clock())

    def _prune(self, now: float) -> None:
        while self.failures and now - self.failures[0] > self.policy.failure_window:
            self.failures.popleft()

    def _fail(self, reason: str, permanent: bool) -> WorkerState:
        now = self.clock()
        self.failures.append(now)
        self._prune(now)
        if permanent or len(self.failures) >= self.policy.max_failures:
            self.retry_at = None
            if not permanent:
                reason = f"{reason} ({len(self.failures)} failures within {self.policy.failure_window:g} s; given up)"
            self._move(S.FATAL, reason)
            return S.FATAL
        self.retry_at = now + self.policy.delay(len(self.failures))
        self._move(S.BACKOFF, reason)
        return S.BACKOFF

    def _move(self, target: WorkerState, reason: str) -> None:
        before = self.state
        self.state, self.since = target, self.clock()
        if reason or target in (S.BACKOFF, S.FATAL, S.STARTING):
            self.reason = reason
        if self.on_change is not None:
            self.on_change(self, before, target, reason)

    @property
    def serving(self) -> bool:
        return self.state in (S.READY, S.BUSY)

    def backoff_left(self) -> float:
        return 0.0 if self.retry_at is None else max(0.0, self.retry_at - self.clock())
