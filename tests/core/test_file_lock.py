"""``homesec.files.FileLock``: one holder at a time, the waiter told who holds it, and a holder
that dies (killed, not cleaned up) lets the next one in."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from homesec.files import FileLock


def test_a_second_holder_waits_is_told_the_holders_pid_and_gets_in_on_release(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kept" / "answers.sqlite.lock"
    first = FileLock(path)
    told: list[str] = []
    got: list[FileLock] = []
    waiter = threading.Thread(target=lambda: got.append(FileLock(path, told.append)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not told:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert told == [str(os.getpid())]
    time.sleep(0.2)
    assert not got and waiter.is_alive()  # waiting, not failing
    first.release()
    first.release()  # a second release does nothing
    waiter.join(10)
    assert len(got) == 1 and path.read_text() == f"{os.getpid()}\n"
    got[0].release()
    FileLock(path, told.append).release()  # free: taken at once, nobody told
    assert len(told) == 1


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "tracks.sqlite.lock"
    code = (
        "import sys, time; from pathlib import Path; from homesec.files import FileLock; "
        "FileLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"
        told: list[str] = []
        blocked = threading.Thread(target=lambda: FileLock(path, told.append).release())
        blocked.start()
        deadline = time.monotonic() + 10
        while not told:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert told == [str(child.pid)]
        child.kill()  # no release: the kernel drops the lock with the process
        blocked.join(10)
        assert not blocked.is_alive()
    finally:
        child.kill()
        child.wait()
