"""Model slots with real worker processes: swap while serving, refuse what cannot serve,
roll back inside the bake period, fail over to a warm standby."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from harken import config
from harken.errors import WorkerError
from harken.events import EventLog
from harken.supervisor.clients import AsrClient, WakeClient
from harken.supervisor.probes import clip
from harken.supervisor.slots import SwapFailed
from harken.supervisor.supervisor import Supervisor
from support.harness import alive

CHUNK = 1280


def model_events(events: EventLog, action: str | None = None) -> list[dict]:
    return [e for e in events.history if e["type"] == "model" and (action is None or e["action"] == action)]


async def peak(ears: WakeClient, audio: np.ndarray) -> tuple[float, str | None]:
    """The highest wake score over ``audio`` fed chunk by chunk, and the model of the worker that gave it."""
    await ears.reset()
    best = 0.0
    for at in range(0, len(audio) - CHUNK + 1, CHUNK):
        heard = await (await ears.hear(audio[at : at + CHUNK], at, None))
        best = max([best, *heard.scores])
    return best, ears.served_model


def test_the_wake_word_is_swapped_while_chunks_keep_coming_and_none_is_lost(data_dir):
    settings = config.load([], {"models": {"bake_s": 0}})
    events = EventLog()
    jarvis, alexa = clip("probe-wake-hey_jarvis.wav"), clip("probe-wake-alexa.wav")

    async def scenario():
        async with Supervisor(settings, events, roles=("wake",), data_dir=data_dir) as sup:
            slot = sup.slots["wake"]
            ears = WakeClient(slot)
            answered, failed, models = 0, [], set()
            stop = asyncio.Event()

            async def feed() -> None:  # a microphone that never pauses: 8 chunks in flight, like the conversation
                nonlocal answered
                audio = np.tile(clip("probe-asr.wav"), 4)
                at = 0
                while not stop.is_set():
                    pending = []
                    for _ in range(8):
                        pending.append(await ears.hear(audio[at % (len(audio) - CHUNK):][:CHUNK], at, None))
                        models.add(ears.worker.model)
                        at += CHUNK
                    for answer in pending:
                        try:
                            await answer
                            answered += 1
                        except WorkerError as exc:
                            failed.append(str(exc))
                    await asyncio.sleep(0.02)

            feeder = asyncio.get_running_loop().create_task(feed())
            await asyncio.sleep(1.0)
            old_pid = slot.active.pid
            result = await slot.swap("alexa")
            await asyncio.sleep(1.0)
            stop.set()
            await feeder
            after = await peak(WakeClient(slot), alexa), await peak(WakeClient(slot), jarvis)
            return result, old_pid, answered, failed, models, after, slot.describe()

    result, old_pid, answered, failed, models, (on_alexa, on_jarvis), described = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert failed == [] and answered > 50
    assert models == {"hey_jarvis", "alexa"}
    assert result["model"] == "alexa" and result["previous"] == "hey_jarvis" and result["gap_ms"] == 0.0
    assert on_alexa[0] >= settings.wake.threshold and on_alexa[1] == "alexa"
    assert on_jarvis[0] < settings.wake.threshold  # the old wake word no longer wakes it
    # The old worker was kept as a warm standby (memory allows it here), its process alive until the end.
    assert described["model"] == "alexa" and described["standby"]["model"] == "hey_jarvis"
    assert result["old_kept"] is True and result["pid"] != old_pid
    assert [e["ok"] for e in model_events(events, "swap")] == [True]


def test_a_model_that_cannot_load_never_serves_and_the_old_one_serves_on(data_dir):
    settings = config.load([], {})
    events = EventLog()

    async def scenario():
        async with Supervisor(settings, events, roles=("wake",), data_dir=data_dir) as sup:
            slot = sup.slots["wake"]
            pid = slot.active.pid
            with pytest.raises(SwapFailed, match="no-such-wake-word did not become ready") as failed:
                await slot.swap("no-such-wake-word")
            score = await peak(WakeClient(slot), clip("probe-wake-hey_jarvis.wav"))
            return str(failed.value), pid, slot.active.pid, slot.model, score, slot.standby

    error, pid, pid_after, model, (score, served_by), standby = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert "hey_jarvis serves on" in error
    assert pid_after == pid and model == "hey_jarvis" and served_by == "hey_jarvis" and standby is None
    assert score >= settings.wake.threshold
    [refused] = model_events(events, "swap")
    assert refused["ok"] is False and refused["model"] == "no-such-wake-word" and refused["reason"]


def test_a_new_model_that_crashes_while_baking_is_rolled_back_at_once(data_dir):
    settings = config.load([], {"models": {"bake_s": 120}})
    events = EventLog()

    async def scenario():
        async with Supervisor(settings, events, roles=("wake",), data_dir=data_dir) as sup:
            slot = sup.slots["wake"]
            first = slot.active.pid
            await slot.swap("alexa")
            new = slot.active.pid
            os.kill(new, signal.SIGKILL)
            async with asyncio.timeout(30):
                while slot.model != "hey_jarvis":
                    await asyncio.sleep(0.02)
            rolled = time.monotonic()
            score = await peak(WakeClient(slot), clip("probe-wake-hey_jarvis.wav"))
            async with asyncio.timeout(30):  # the crashed new worker is stopped, not left restarting
                while alive(new) or slot.standby is not None:
                    await asyncio.sleep(0.05)
            return first, new, slot.active.pid, score, slot.describe(), rolled

    first, new, active, (score, served_by), described, _ = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert active == first  # the previous worker, kept warm, serves again: no load
    assert served_by == "hey_jarvis" and score >= settings.wake.threshold
    [rollback] = model_events(events, "rollback")
    assert rollback["model"] == "hey_jarvis" and rollback["previous"] == "alexa" and rollback["gap_ms"] == 0.0
    assert "failed while baking" in rollback["reason"] and "SIGKILL" in rollback["reason"]
    assert described["last"]["action"] == "rollback" and described["baking_s"] is None


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_a_failed_worker_is_replaced_by_its_warm_standby_and_no_transcription_fails(data_dir, fault):
    settings = config.load([], {"models": {"standby": ["asr"]}, "workers": {"asr_deadline": 1.0, "kill_grace": 0.5}})
    events = EventLog()
    audio = np.tile(clip("probe-asr.wav"), 2)

    async def scenario():
        async with Supervisor(settings, events, roles=("asr",), data_dir=data_dir) as sup:
            slot = sup.slots["asr"]
            async with asyncio.timeout(120):
                while slot.standby is None or slot.standby.state != "ready":
                    await asyncio.sleep(0.05)
            active, standby = slot.active.pid, slot.standby.pid
            asr = AsrClient(slot)
            texts, served = [], []
            faulted = None
            for i in range(12):
                if i == 3:
                    faulted = time.monotonic()
                    task = asyncio.ensure_future(asr.transcribe(audio))  # in flight when the worker fails
                    await asyncio.sleep(0.05)
                    os.kill(active, fault)
                    texts.append(await task)
                else:
                    texts.append(await asr.transcribe(audio))
                served.append(asr.served_by.pid)
            failover = next(e for e in events.history if e["type"] == "model" and e["action"] == "failover")
            async with asyncio.timeout(120):  # the failed worker restarts by itself and is the next standby
                while slot.standby is None or slot.standby.state != "ready":
                    await asyncio.sleep(0.05)
            return active, standby, texts, served, failover, slot.standby.pid, faulted

    active, standby, texts, served, failover, new_standby, _ = asyncio.run(asyncio.wait_for(scenario(), 400))
    assert all("time" in t.lower() for t in texts), texts  # every request answered, the one in flight included
    assert served[:3] == [active] * 3 and set(served[3:]) == {standby}
    assert failover["pid"] == standby and failover["ok"] is True
    assert ("SIGKILL" if fault == signal.SIGKILL else "hung") in failover["reason"]
    assert new_standby not in (active, standby) and not alive(active)


def test_without_memory_for_both_models_the_old_stops_first_and_the_gap_is_reported(data_dir):
    settings = config.load([], {"models": {"memory_budget_mb": 1, "bake_s": 0}})  # nothing fits beside anything
    events = EventLog()

    async def scenario():
        async with Supervisor(settings, events, roles=("wake",), data_dir=data_dir) as sup:
            slot = sup.slots["wake"]
            old = slot.active.pid
            result = await slot.swap("alexa")
            score = await peak(WakeClient(slot), clip("probe-wake-alexa.wav"))
            return old, result, score, slot.standby

    old, result, (score, served_by), standby = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert result["mode"].startswith("stopped, then started (memory:") and "> budget 1 MB" in result["mode"]
    assert result["gap_ms"] > 0 and result["old_kept"] is False and standby is None
    assert not alive(old)
    assert served_by == "alexa" and score >= settings.wake.threshold
