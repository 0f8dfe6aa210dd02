"""homesec.pagemerge: services offer their memory to the kernel's same-page merging (KSM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homesec.pagemerge import ksm_running, merged_bytes


def kernel_version() -> tuple[int, ...]:
    return tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])


needs_ksm = pytest.mark.skipif(
    ksm_running() is None or kernel_version() < (6, 4),
    reason="needs a Linux 6.4+ kernel with KSM",
)


def run_python(code: str, env: dict[str, str] | None = None) -> object:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


MERGEABLE_VMAS = (
    "def mergeable():\n"
    "    return sum(1 for l in open('/proc/self/smaps')\n"
    "               if l.startswith('VmFlags') and ' mg' in l)\n"
)


@needs_ksm
def test_opting_in_marks_every_mapping_mergeable_and_forks_inherit_it():
    code = (
        "import json, os\n"
        "from homesec.pagemerge import set_page_merging, page_merging\n"
        + MERGEABLE_VMAS
        + "before = [page_merging(), mergeable()]\n"
        "taken = set_page_merging(True)\n"
        "on = [page_merging(), mergeable()]\n"
        "r, w = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(w, json.dumps([page_merging(), mergeable()]).encode()); os._exit(0)\n"
        "os.close(w); child = json.loads(os.read(r, 1000)); os.wait()\n"
        "off = [set_page_merging(False), page_merging(), mergeable()]\n"
        "print(json.dumps([before, taken, on, child, off]))\n"
    )
    before, taken, on, child, off = run_python(code)
    assert before == [False, 0]
    assert taken is True
    assert on[0] is True and on[1] > 10  # heap, stacks, libraries' data: all of them
    assert child[0] is True and child[1] > 10
    assert off == [True, False, 0]


@needs_ksm
@pytest.mark.parametrize(("setting", "expected"), [(None, True), ("false", False)])
def test_a_service_opts_in_unless_its_setting_says_no(setting, expected, tmp_path):
    """run_service applies HOMESEC_<SERVICE>_MERGE_PAGES before it builds the service (a
    service factory that fails at once shows the state it ran with)."""
    code = (
        "import json, sys\n"
        "from homesec.pagemerge import page_merging\n"
        "from homesec.service import run_service\n"
        "from homesec.settings import ServiceSettings, settings_config\n"
        "class ProbeSettings(ServiceSettings):\n"
        "    model_config = settings_config('HOMESEC_PROBE_')\n"
        "seen = []\n"
        "def factory(rt, settings):\n"
        "    seen.append(page_merging())\n"
        "    raise ValueError('stop here')\n"
        "code = run_service('probe', ProbeSettings, factory)\n"
        "print(json.dumps([code, seen]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESEC_")}
    env.update(HOMESEC_DATA_DIR=str(tmp_path), HOMESEC_PROBE_METRICS_PORT="0")
    if setting is not None:
        env["HOMESEC_PROBE_MERGE_PAGES"] = setting
    assert run_python(code, env) == [2, [expected]]


def test_merged_bytes_reads_the_kernels_count(tmp_path: Path):
    stat = tmp_path / "ksm_stat"
    stat.write_text(
        "ksm_rmap_items 120\nksm_zero_pages 0\nksm_merging_pages 25\nksm_process_profit 9\n"
    )
    assert merged_bytes(stat) == 25 * os.sysconf("SC_PAGE_SIZE")
    assert merged_bytes(tmp_path / "missing") == 0
    stat.write_text("ksm_merging_pages lots\n")
    assert merged_bytes(stat) == 0


def test_every_service_exports_its_merged_memory():
    from prometheus_client import generate_latest

    from homesec.metrics import ServiceMetrics

    text = generate_latest(ServiceMetrics("probe").registry).decode()
    assert "homesec_process_merged_memory_bytes " in text
