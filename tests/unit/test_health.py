"""The worker state machine, transition by transition, on an injected clock."""

import pytest

from harken.supervisor.health import TRANSITIONS, Health, IllegalTransition, Policy
from harken.supervisor.health import WorkerState as S


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def machine():
    clock = Clock()
    seen = []
    health = Health("asr", Policy(backoff_initial=0.5, backoff_cap=4.0, max_failures=4, failure_window=60.0),
                    on_change=lambda h, before, after, reason: seen.append((before, after, reason)), clock=clock)
    return health, clock, seen


def to_ready(health):
    health.fire("start")
    health.fire("loaded")
    health.fire("probed", "probe passed")


def test_start_probe_ready_busy_ready(machine):
    health, clock, seen = machine
    assert health.state is S.STOPPED
    assert health.fire("start") is S.STARTING
    assert health.fire("loaded") is S.PROBING
    assert not health.serving
    assert health.fire("probed") is S.READY and health.serving
    clock.now += 3
    assert health.fire("request") is S.BUSY and health.serving
    assert health.since == clock.now
    assert health.fire("idle") is S.READY
    assert [(b.value, a.value) for b, a, _ in seen] == [
        ("stopped", "starting"), ("starting", "probing"), ("probing", "ready"), ("ready", "busy"), ("busy", "ready")]
    assert health.restarts == 0


@pytest.mark.parametrize("state", ["starting", "probing", "ready", "busy"])
def test_failure_in_any_live_state_backs_off(machine, state):
    health, clock, seen = machine
    path = {"starting": ["start"], "probing": ["start", "loaded"], "ready": ["start", "loaded", "probed"],
            "busy": ["start", "loaded", "probed", "request"]}[state]
    for event in path:
        health.fire(event)
    assert health.fire("failed", "killed by SIGKILL") is S.BACKOFF
    assert health.reason == "killed by SIGKILL"
    assert health.retry_at == clock.now  # the first failure in the window: restarted at once
    assert seen[-1] == (S(state), S.BACKOFF, "killed by SIGKILL")
    assert health.fire("retry") is S.STARTING
    assert health.restarts == 1 and health.retry_at is None


def test_backoff_doubles_up_to_the_cap_then_fatal(machine):
    health, clock, _ = machine
    policy = Policy(backoff_initial=0.5, backoff_cap=4.0, max_failures=6, failure_window=600.0)
    health.policy = policy
    delays = []
    health.fire("start")
    for _ in range(5):
        assert health.fire("failed", "crashed while loading") is S.BACKOFF
        delays.append(health.backoff_left())
        clock.now += health.backoff_left()
        assert health.backoff_left() == 0
        health.fire("retry")
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert health.fire("failed", "crashed while loading") is S.FATAL
    assert "6 failures within 600 s" in health.reason and "crashed while loading" in health.reason
    assert health.retry_at is None
    assert health.restarts == 5


def test_old_failures_leave_the_window(machine):
    health, clock, _ = machine  # 4 failures within 60 s are fatal
    to_ready(health)
    for _ in range(3):
        health.fire("failed", "died")
        clock.now += 30
        health.fire("retry")
        health.fire("loaded")
        health.fire("probed")
    # failures at 0, 30, 60 s; the fourth, at 90 s, would be fatal, but the first has left the window
    assert health.fire("failed", "died") is S.BACKOFF
    assert list(health.failures) == [1030.0, 1060.0, 1090.0]
    clock.now += 61
    health.fire("retry")
    assert health.fire("failed", "died") is S.BACKOFF  # everything before left the window
    assert len(health.failures) == 1 and health.backoff_left() == 0.0


def test_permanent_failure_is_fatal_at_once(machine):
    health, _, seen = machine
    health.fire("start")
    assert health.fire("fatal", "model file corrupt: reinstall it") is S.FATAL
    assert health.reason == "model file corrupt: reinstall it"
    assert seen[-1][1] is S.FATAL
    assert not health.serving


def test_explicit_start_from_fatal_clears_failures(machine):
    health, _, _ = machine
    health.fire("start")
    health.fire("fatal", "corrupt")
    assert health.fire("start") is S.STARTING
    assert not health.failures and health.restarts == 1


def test_stop_from_every_state_and_nothing_after(machine):
    health, _, _ = machine
    for state in (S.STARTING, S.PROBING, S.READY, S.BUSY, S.BACKOFF, S.FATAL):
        assert TRANSITIONS[(state, "stop")] is S.STOPPING
    to_ready(health)
    assert health.fire("stop") is S.STOPPING
    with pytest.raises(IllegalTransition):
        health.fire("failed", "died while stopping")
    assert health.fire("stopped") is S.STOPPED


@pytest.mark.parametrize("state, event", [
    (S.STOPPED, "loaded"), (S.STARTING, "probed"), (S.STARTING, "request"), (S.PROBING, "request"),
    (S.READY, "idle"), (S.BACKOFF, "loaded"), (S.FATAL, "retry"), (S.STOPPED, "failed"), (S.BACKOFF, "failed"),
])
def test_illegal_transitions_are_refused_and_change_nothing(machine, state, event):
    health, _, seen = machine
    health.state = state
    before = len(seen)
    with pytest.raises(IllegalTransition):
        health.fire(event)
    assert health.state is state and len(seen) == before


def test_every_state_is_reachable_and_every_table_entry_leads_somewhere_known():
    reachable = {S.STOPPED}
    frontier = [S.STOPPED]
    while frontier:
        state = frontier.pop()
        nexts = [t for (s, _), t in TRANSITIONS.items() if s is state]
        if state in (S.STARTING, S.PROBING, S.READY, S.BUSY):
            nexts += [S.BACKOFF, S.FATAL]
        for t in nexts:
            if t not in reachable:
                reachable.add(t)
                frontier.append(t)
    assert reachable == set(S)
