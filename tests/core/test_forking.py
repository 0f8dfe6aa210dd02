"""homesec.forking: a service as a fork of a preloaded parent behaves like ``python -m``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from homesec.forking import ForkedService, process_title
from homesec.services import CATALOGUE, ServiceInfo
from support import wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throwaway package ``forkprobe`` whose ``__main__`` does what FORKPROBE_DO says."""
    package = tmp_path / "forkprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import json, os, signal, sys, time\n"
        "from pathlib import Path\n"
        "out = Path(os.environ['FORKPROBE_OUT'])\n"
        "title = Path('/proc/self/cmdline').read_bytes().split(b'\\0')[0].decode()\n"
        "handler = signal.getsignal(signal.SIGTERM)\n"
        "out.write_text(json.dumps([__name__, sys.argv, title, handler == signal.SIG_DFL]))\n"
        "do = os.environ['FORKPROBE_DO']\n"
        "if do == 'exit3': raise SystemExit(3)\n"
        "if do == 'raise': raise RuntimeError('boom')\n"
        "if do == 'message': raise SystemExit('bad setting: X')\n"
        "if do == 'sleep': time.sleep(60)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return ServiceInfo("probe", "forkprobe", 0)


def start(info: ServiceInfo, tmp_path: Path, do: str) -> tuple[ForkedService, Path]:
    out = tmp_path / f"{do}.txt"
    env = dict(os.environ, FORKPROBE_OUT=str(out), FORKPROBE_DO=do)
    return ForkedService(info, env), out


def test_fork_runs_the_module_as_main_with_its_title_and_exit_code(module, tmp_path):
    child, out = start(module, tmp_path, "exit3")
    assert child.wait(20) == 3
    name, argv, title, default_term = json.loads(out.read_text())
    assert name == "__main__"
    assert argv[0].endswith("__main__.py")
    assert title == process_title(module) == "homesec probe"
    assert default_term, "the parent's SIGTERM handler leaked into the fork"


def test_a_normal_end_is_0_an_exception_1_and_a_message_1(module, tmp_path):
    assert start(module, tmp_path, "done")[0].wait(20) == 0
    assert start(module, tmp_path, "raise")[0].wait(20) == 1
    assert start(module, tmp_path, "message")[0].wait(20) == 1


def test_sigterm_stops_a_fork_and_wait_times_out_while_it_runs(module, tmp_path):
    child, out = start(module, tmp_path, "sleep")
    wait_until(out.exists, 20)
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.2)
    child.send_signal(signal.SIGTERM)
    assert child.wait(20) == -signal.SIGTERM
    child.send_signal(signal.SIGTERM)  # a finished child: nothing to signal, no error
    assert child.poll() == -signal.SIGTERM


def test_preload_imports_the_core_and_every_main_with_what_they_import():
    """In a fresh interpreter (the test process has imported everything already)."""
    script = (
        "import json, sys\n"
        "from homesec.forking import preload\n"
        "from homesec.services import CATALOGUE\n"
        "before = set(sys.modules)\n"
        "shared = preload(CATALOGUE)\n"
        "print(json.dumps([shared, sorted(set(sys.modules) - before)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    shared, imported = json.loads(out.stdout)
    assert "homesec.service" in shared
    assert {f"{i.module}.main" for i in CATALOGUE} <= set(shared)
    assert {"numpy", "cv2", *shared} <= set(imported)  # cv2, numpy: camera's and detector's
