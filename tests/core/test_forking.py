"""homesec.forking: a service as a fork of a preloaded parent behaves like ``python -m``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from homesec.forking import process_title
from homesec.services import CATALOGUE, ServiceInfo

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def module(tmp_path: Path) -> Path:
    """A throwaway package ``forkprobe`` (in the folder returned) whose ``__main__`` does what
    FORKPROBE_DO says."""
    package = tmp_path / "forkprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text("")  # what the preloader imports of every service
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
        "if do == 'settings':\n"
        "    from homesec.settings import load_settings\n"
        "    from forkprobe.settings import ProbeSettings\n"
        "    s = load_settings(ProbeSettings)\n"
        "    out.with_suffix('.settings').write_text(json.dumps([s.built_by, os.getpid(), s.greeting]))\n"
    )
    (package / "settings.py").write_text(
        "import os\n"
        "from pydantic import Field\n"
        "from homesec.settings import ServiceSettings, settings_config\n"
        "class ProbeSettings(ServiceSettings):\n"
        "    model_config = settings_config('FORKPROBE_')\n"
        "    built_by: int = Field(default_factory=os.getpid)\n"
        "    greeting: int = 1\n"
    )
    return tmp_path


DRIVER = """
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from homesec.forking import become_subreaper, fork_services
from homesec.services import ServiceInfo
assert become_subreaper()
info = ServiceInfo("probe", "forkprobe", 0)
env = dict(os.environ)
report = {"driver": os.getpid(), "runs": []}
for do in sys.argv[2].split(","):
    env["FORKPROBE_DO"], env["FORKPROBE_OUT"] = do, os.path.join(sys.argv[3], do + ".txt")
    (child,) = fork_services([info], env)
    run = {"do": do, "ppid": int(open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[1])}
    if do == "sleep":
        while not os.path.exists(env["FORKPROBE_OUT"]):
            time.sleep(0.05)
        run["running"] = child.poll() is None
        try:
            child.wait(0.2)
        except Exception as exc:
            run["timeout"] = type(exc).__name__
        child.send_signal(signal.SIGTERM)
    run["code"] = child.wait(20)
    child.send_signal(signal.SIGTERM)  # finished: nothing to signal, no error
    report["runs"].append(run)
print(json.dumps(report))
"""


def drive(module_root: Path, tmp_path: Path, *steps: str) -> dict:
    """Fork the probe service once per step from a driver process that is its subreaper (the
    test process itself never becomes one) and report what happened."""
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(module_root), ",".join(steps), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_fork_runs_the_module_as_main_with_its_title_and_exit_code(module, tmp_path):
    report = drive(module, tmp_path, "exit3")
    (run,) = report["runs"]
    assert run["code"] == 3
    # the preloader has exited: the service is the driver's own child
    assert run["ppid"] == report["driver"]
    name, argv, title, default_term = json.loads((tmp_path / "exit3.txt").read_text())
    assert name == "__main__"
    assert argv[0].endswith("__main__.py")
    assert title == process_title(ServiceInfo("probe", "forkprobe", 0)) == "homesec probe"
    assert default_term, "the parent's SIGTERM handler leaked into the fork"


def test_a_normal_end_is_0_an_exception_1_and_a_message_1(module, tmp_path):
    runs = drive(module, tmp_path, "done", "raise", "message")["runs"]
    assert [r["code"] for r in runs] == [0, 1, 1]


def test_sigterm_stops_a_fork_and_wait_times_out_while_it_runs(module, tmp_path):
    (run,) = drive(module, tmp_path, "sleep")["runs"]
    assert run["running"] is True
    assert run["timeout"] == "TimeoutExpired"
    assert run["code"] == -signal.SIGTERM


def subreaper_script(module: Path, body: str) -> str:
    """A driver (``python -c``) that can import the probe package and is its forks' subreaper,
    then runs ``body``."""
    return (
        "import json, os, sys\n"
        f"sys.path.insert(0, {str(module)!r})\n"
        "from homesec.forking import become_subreaper, fork_services\n"
        "from homesec.services import ServiceInfo\n"
        "assert become_subreaper()\n" + body
    )


def test_a_service_that_cannot_be_preloaded_fails_alone(module, tmp_path):
    """One service's modules do not import: it is still forked and fails in its own process
    (status 1, its traceback), and the other service runs."""
    script = subreaper_script(
        module,
        "ghost, probe = ServiceInfo('ghost', 'no_such_module_here', 0), ServiceInfo('probe', 'forkprobe', 0)\n"
        f"env = dict(os.environ, FORKPROBE_DO='exit3', FORKPROBE_OUT={str(tmp_path / 'out.txt')!r})\n"
        "children = fork_services([ghost, probe], env)\n"
        "print(json.dumps({c.info.name: c.wait(30) for c in children}))\n",
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.splitlines()[-1]) == {"ghost": 1, "probe": 3}
    assert "No module named no_such_module_here" in out.stderr  # the ghost's own traceback


def test_the_runner_reads_its_settings_without_importing_pydantic(tmp_path):
    """``read_plan`` parses HOMESEC_RUN_* in a child: the runner stays small; a bad setting
    still ends it with the error naming it."""
    script = (
        "import json, sys\n"
        "from homesec.runner import read_plan\n"
        "plan = read_plan({'services': ['camera']})\n"
        "print(json.dumps([plan.services, plan.restart_min_seconds, 'pydantic' in sys.modules]))\n"
    )
    env = dict(os.environ, HOMESEC_RUN_RESTART_MIN_SECONDS="0.5")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [["camera"], 0.5, False]
    env["HOMESEC_RUN_RESTART_MIN_SECONDS"] = "-1"
    bad = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2
    assert "restart_min_seconds" in bad.stderr.lower()


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


def test_the_runner_reaps_what_a_service_left_behind():
    """As the services' subreaper the runner inherits their orphans; it reaps them (no zombie
    stays) and leaves its own children to their owners."""
    script = (
        "import os, subprocess, sys, time\n"
        "from pathlib import Path\n"
        "from homesec.forking import become_subreaper\n"
        "from homesec.runner import Child, RunPlan, Runner\n"
        "from homesec.services import CATALOGUE\n"
        "assert become_subreaper()\n"
        "plan = RunPlan('127.0.0.1', 1, False, Path('.'), (), 1.0, 2.0, 30.0, True)\n"
        "runner = Runner(plan)\n"
        "own = subprocess.Popen(['sh', '-c', 'sleep 0.3; exit 3'])\n"
        "runner.children = [Child(CATALOGUE[0], proc=own)]\n"
        "service = os.fork()\n"
        "if service == 0:\n"
        "    subprocess.Popen(['sleep', '0.3'])  # left behind\n"
        "    os._exit(0)\n"
        "os.waitpid(service, 0)\n"
        "time.sleep(1.0)\n"
        "runner.reap_orphans()  # its own exited child first: left to its Popen\n"
        "code = own.wait()\n"
        "runner.reap_orphans()  # then the orphan\n"
        "me = str(os.getpid())\n"
        "zombies = [p.name for p in Path('/proc').iterdir() if p.name.isdigit()\n"
        "           and (p / 'stat').read_text().rsplit(')', 1)[1].split()[:2] == ['Z', me]]\n"
        "print(json.dumps([zombies, code]))\n"
    )
    script = "import json\n" + script
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    zombies, own_code = json.loads(out.stdout)
    assert zombies == []
    assert own_code == 3  # reaped by its Popen, not taken by the runner's reaper


def test_a_fork_takes_the_settings_its_preloader_built(module, tmp_path):
    """The preloader builds each service's settings from the services' environment (not the
    runner's) and the fork loads those instead of building them again; settings that do not
    validate are still reported by the service itself: status 2, the variable named."""
    script = subreaper_script(
        module,
        "probe = ServiceInfo('probe', 'forkprobe', 0, settings='forkprobe.settings:ProbeSettings')\n"
        "codes = []\n"
        "for greeting in ('7', 'many'):\n"
        f"    out = os.path.join({str(tmp_path)!r}, 'out-' + greeting + '.txt')\n"
        "    env = dict(os.environ, FORKPROBE_DO='settings', FORKPROBE_OUT=out,\n"
        "               FORKPROBE_GREETING=greeting)\n"
        "    (child,) = fork_services([probe], env)\n"
        "    codes.append(child.wait(30))\n"
        "print(json.dumps(codes))\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORKPROBE_")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [0, 2]
    built_by, service_pid, greeting = json.loads((tmp_path / "out-7.settings").read_text())
    assert greeting == 7  # the environment handed to the services
    assert built_by != service_pid  # built before the fork, in the preloader
    assert not (tmp_path / "out-many.settings").exists()
    assert "FORKPROBE_GREETING" in out.stderr


@pytest.mark.parametrize("info", CATALOGUE, ids=lambda info: info.name)
def test_the_catalogue_names_the_settings_each_service_loads(info):
    """``ServiceInfo.settings`` is the class the service's ``main`` hands to ``run_service``
    (its prefix is the service's): what the preloader builds is what the fork asks for."""
    import importlib

    from homesec.settings import ServiceSettings

    module, _, name = info.settings.partition(":")
    settings_cls = getattr(importlib.import_module(module), name)
    assert issubclass(settings_cls, ServiceSettings)
    assert settings_cls.model_config["env_prefix"] == info.env_prefix
    main = importlib.import_module(f"{info.module}.main")
    assert getattr(main, name) is settings_cls
