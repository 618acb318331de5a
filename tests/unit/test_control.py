"""The control socket against hostile input and a hostile /tmp: a real ControlServer on a real Unix socket."""

import asyncio
import json
import os
import stat

import pytest

from harken.supervisor.control import MAX_REQUEST, ControlError, ControlServer, default_path, query

NESTED = b"[" * 30_000 + b"]" * 30_000  # under MAX_REQUEST, and a RecursionError (not a ValueError) in json.loads
TIMEOUT = 10


async def status(request):
    return {"summary": "5/5 workers serving"}


async def ask(sock, lines: list[bytes]) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(str(sock))
    try:
        answers = []
        for line in lines:
            writer.write(line + b"\n")
            await writer.drain()
            answers.append(json.loads(await reader.readline()))
        return answers
    finally:
        writer.close()
        await writer.wait_closed()


def serve(sock, session):
    """Run a real ControlServer on ``sock`` while ``session(server)`` talks to it."""
    async def go():
        server = ControlServer(sock, {"status": status})
        await server.start()
        try:
            return await session(server)
        finally:
            await server.close()

    return asyncio.run(asyncio.wait_for(go(), TIMEOUT))


def test_a_deeply_nested_request_gets_an_error_and_the_server_keeps_serving(tmp_path):
    sock = tmp_path / "control.sock"

    async def session(server):
        first = await ask(sock, [NESTED, b'{"command": "status"}'])  # same connection, next request
        second = await ask(sock, [b'{"command": "status"}'])  # another client
        third = await asyncio.to_thread(query, sock, "status")
        return first, second, third

    (nested, after), (other,), third = serve(sock, session)
    assert nested["ok"] is False and "nested too deeply" in nested["error"]
    assert after == other == {"ok": True, "summary": "5/5 workers serving"}
    assert third["summary"] == "5/5 workers serving"


def test_an_over_long_request_gets_an_error_and_other_clients_are_served(tmp_path):
    sock = tmp_path / "control.sock"

    async def session(server):
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b'{"command": "status", "pad": "' + b"x" * (MAX_REQUEST + 10) + b'"}\n')
        await writer.drain()
        answer = json.loads(await reader.readline())
        closed = await reader.read()  # the server hangs up: the rest of that line is not a request
        writer.close()
        return answer, closed, await ask(sock, [b"not json", b'{"command": "status"}'])

    answer, closed, (bad, good) = serve(sock, session)
    assert answer["ok"] is False and f"longer than {MAX_REQUEST} bytes" in answer["error"]
    assert closed == b""
    assert bad["ok"] is False and "not JSON" in bad["error"]
    assert good["ok"] is True


# -- where the socket lives -------------------------------------------------------------------------
def start_at(path):
    async def go():
        server = ControlServer(path, {"status": status})
        await server.start()
        try:
            return await asyncio.to_thread(query, path, "status")
        finally:
            await server.close()

    return asyncio.run(asyncio.wait_for(go(), TIMEOUT))


def test_default_path_falls_back_to_a_per_user_directory_under_the_tmp_root(tmp_path):
    assert default_path({}, euid=1000, tmp_root=tmp_path) == tmp_path / "harken-1000" / "harken" / "control.sock"
    assert default_path({"XDG_RUNTIME_DIR": "/run/user/1000"}, euid=1000).as_posix() == "/run/user/1000/harken/control.sock"
    assert default_path({"RUNTIME_DIRECTORY": "/run/harken"}, euid=1000).as_posix() == "/run/harken/control.sock"
    assert default_path({}, euid=0).as_posix() == "/run/harken/control.sock"


def test_the_fallback_directory_is_created_private(tmp_path):
    path = default_path({}, euid=os.geteuid() or 1000, tmp_root=tmp_path)
    assert start_at(path)["ok"] is True
    for d in (path.parent, path.parent.parent):  # harken-<uid>/harken and harken-<uid>
        st = os.stat(d)
        assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700


def test_our_own_private_fallback_directory_is_accepted(tmp_path):
    path = default_path({}, euid=1000, tmp_root=tmp_path)
    path.parent.parent.mkdir(mode=0o700)
    assert start_at(path)["ok"] is True


def test_a_world_writable_fallback_directory_is_refused(tmp_path):
    path = default_path({}, euid=1000, tmp_root=tmp_path)
    path.parent.parent.mkdir()
    os.chmod(path.parent.parent, 0o777)  # anyone may rename our harken/ and put theirs in its place
    with pytest.raises(ControlError, match=r"harken-1000 is writable by others \(mode 777\).*XDG_RUNTIME_DIR.*--control PATH"):
        start_at(path)
    assert not path.exists()


def test_a_fallback_directory_made_by_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by another uid")
    path = default_path({}, euid=1000, tmp_root=tmp_path)
    path.parent.mkdir(mode=0o700, parents=True)  # even a private-looking harken/ inside it
    os.chmod(path.parent.parent, 0o700)
    os.chown(path.parent.parent, 65534, 65534)
    with pytest.raises(ControlError, match="harken-1000 belongs to uid 65534, not to uid 0.*--control PATH"):
        start_at(path)
    assert not path.exists()


def test_a_symlinked_fallback_pointing_at_another_users_directory_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by another uid")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    path = default_path({}, euid=1000, tmp_root=tmp_path)
    path.parent.parent.symlink_to(theirs)
    with pytest.raises(ControlError, match="theirs belongs to uid 65534"):
        start_at(path)
    assert list(theirs.iterdir()) == []  # nothing made inside their directory
