"""Frames nested too deeply for json.loads are protocol errors, on both ends of a worker's pipe."""

import asyncio
import sys

import pytest

from harken.config import Settings
from harken.errors import WorkerDied
from harken.events import EventLog
from harken.supervisor import messages as m
from harken.supervisor.process import WorkerProcess

# A stand-in for `python -m harken.supervisor.child` at the process boundary: it speaks the
# frame protocol, and its first incarnation answers a request with a header nested 100,000 deep
# and then stays alive (a worker whose output is garbage, not one that died).
FAKE_WORKER = r'''#!{python}
import json, pathlib, socket, sys
sock = socket.socket(fileno=int(sys.argv[-1]))
rfile = sock.makefile("rb")
runs = pathlib.Path(sys.argv[0] + ".runs")
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
first = runs.read_text() == "x"

def header():
    try:
        line = rfile.readline()
    except OSError:
        line = b""
    if not line:  # the supervisor hung up
        sys.exit(0)
    head = json.loads(line)
    rfile.read(head.get("len", 0))
    return head

def send(kind, ident, **data):
    sock.sendall(json.dumps({{"type": kind, "id": ident, "len": 0, "data": data}}).encode() + b"\n")

header()  # init
send("ready", 0, model="fake", load_s=0.0, pid=0, nice=0)
while True:
    head = header()
    if head["type"] == "ping":
        send("pong", head["id"])
    elif first:
        sock.sendall(b"[" * 100000 + b"]" * 100000 + b"\n")
    else:
        send("done", head["id"])
'''


def test_a_worker_that_sends_a_nested_header_is_restarted_as_sending_a_bad_frame(tmp_path, monkeypatch):
    fake = tmp_path / "fake-worker"
    fake.write_text(FAKE_WORKER.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))  # the only seam: which program a worker runs
    events = EventLog()

    async def go():
        worker = WorkerProcess("asr", Settings(), tmp_path, events)
        await worker.start()
        try:
            with pytest.raises(WorkerDied, match=r"sent a bad frame \(header is nested too deeply"):
                await worker.request(m.Transcribe())
            return await worker.request(m.Transcribe())  # served by the restarted worker
        finally:
            await worker.stop()

    answer = asyncio.run(asyncio.wait_for(go(), 30))
    assert isinstance(answer, m.Done)
    assert (tmp_path / "fake-worker.runs").read_text() == "xx"
    backoff = [e for e in events.history if e["type"] == "worker" and e["state"] == "backoff"]
    assert len(backoff) == 1 and "sent a bad frame (header is nested too deeply" in backoff[0]["reason"]
