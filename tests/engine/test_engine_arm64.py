"""The Pi's platform: the camera and detector images built for linux/arm64 under qemu from a
local arm64 base, and `homesec eval` on a test clip inside the arm64 detector image deciding
exactly as the x86 one does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import report
from engine import HERE, IMAGE_TAG, LOCAL, REPO, Compose, image_size_mb, local_base, run

CLIP = "traffic_320x240.avi"


@pytest.fixture(scope="module")
def arm64_images(built: Compose, stack_env: dict[str, str]) -> dict[str, str]:
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.fail("no qemu-aarch64 binfmt handler (apt-get install qemu-user-static)")
    started = time.monotonic()
    base = local_base("arm64")
    env = {**stack_env, "HOMESEC_LOCAL_BASE_ARM64": base}
    compose = Compose(f"homesec-arm64-{IMAGE_TAG}", env)
    files = ["-f", str(HERE / "compose.arm64.yml")]
    run(["docker", "compose", "-p", compose.project, *files, "build"], env=env, timeout=2400)
    images = {s: f"homesec/{s}:{IMAGE_TAG}-arm64" for s in ("camera", "detector")}
    for image in [*images.values(), f"homesec-local/pi-stub:{IMAGE_TAG}-arm64"]:
        arch = run(["docker", "image", "inspect", "-f", "{{.Architecture}}", image]).stdout
        assert arch.strip() == "arm64", f"{image} is {arch}"
    sizes = ", ".join(f"{s} {image_size_mb(i):.0f} MB" for s, i in images.items())
    report(f"arm64 images built under qemu in {time.monotonic() - started:.0f} s: {sizes}")
    return {**images, "base": base}


# builds and waits: longer than the suite's 300 s default (the first run builds every image)
pytestmark = pytest.mark.timeout(2400)


def evaluate(image: str, platform: str) -> list[dict[str, object]]:
    """``homesec eval --json`` on the clip inside ``image``: one dict per frame, then the summary."""
    clips = REPO / "tests" / "assets" / "video"
    out = run(
        ["docker", "run", "--rm", "--network", "none", "--platform", platform,
         "-v", f"{clips}:/clips:ro", "--entrypoint", "homesec", image,
         "eval", f"/clips/{CLIP}", "--json"],
        timeout=1200,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def decisions(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    keys = ("frame", "motion", "event_id", "alert")
    return [tuple(r.get(k) for k in keys) for r in rows if "frame" in r]


def test_engine_arm64_detector_decides_as_on_x86(arm64_images: dict[str, str]) -> None:
    x86 = evaluate(f"homesec/detector:{IMAGE_TAG}", "linux/amd64")
    started = time.monotonic()
    arm = evaluate(arm64_images["detector"], "linux/arm64")
    took = time.monotonic() - started
    assert decisions(x86), f"no per-frame output: {x86[-2:]}"
    assert decisions(arm) == decisions(x86), "arm64 and x86 decide differently"
    events = {d[2] for d in decisions(x86) if d[2]}
    assert events, "the clip produced no motion event: the comparison proves little"
    for a, b in zip(arm, x86, strict=True):
        sa, sb = a.get("person_score"), b.get("person_score")
        if isinstance(sa, float) and isinstance(sb, float):
            assert abs(sa - sb) < 0.02, (a, b)
    report(
        f"arm64 eval of {CLIP}: {len(decisions(arm))} frames, {len(events)} events, "
        f"same decisions as x86 (arm64 under qemu took {took:.0f} s)"
    )


def test_engine_arm64_camera_image_starts(arm64_images: dict[str, str]) -> None:
    out = run(
        ["docker", "run", "--rm", "--network", "none", "--platform", "linux/arm64",
         "--entrypoint", "python", arm64_images["camera"], "-c",
         "import platform, cv2, homesec_camera.main; print(platform.machine(), cv2.__version__)"],
        timeout=600,
    )  # fmt: skip
    assert out.stdout.split()[0] == "aarch64", out.stdout


def test_engine_arm64_pi_compose_file_builds(
    arm64_images: dict[str, str], stack_env: dict[str, str]
) -> None:
    """docker-compose.pi.yml's camera-pi and ptz-pi images for linux/arm64: Debian's OpenCV,
    numpy and python3-smbus, pantilthat from PyPI; python3-picamera2 is CI's stand-in."""
    env = {**stack_env, "HOMESEC_LOCAL_BASE_ARM64": arm64_images["base"]}
    files = [
        REPO / "docker-compose.yml",
        REPO / "docker-compose.pi.yml",
        LOCAL,
        HERE / "compose.pi-ci.yml",
    ]
    args = ["docker", "compose", "-p", f"homesec-pi-{IMAGE_TAG}"]
    for path in files:
        args += ["-f", str(path)]
    started = time.monotonic()
    run([*args, "build", "camera", "ptz"], env=env, timeout=2400)
    took = time.monotonic() - started
    camera, ptz = (f"homesec/{n}:{IMAGE_TAG}-arm64" for n in ("camera-pi", "ptz-pi"))
    probes = {
        camera: "import picamera2, cv2, numpy, homesec_camera.main; print(cv2.__file__)",
        ptz: "import smbus, pantilthat, homesec_ptz.main; print(smbus.__file__)",
    }
    for image, probe in probes.items():
        out = run(
            ["docker", "run", "--rm", "--network", "none", "--platform", "linux/arm64",
             "--entrypoint", "sh", image, "-c",
             f"uname -m; id -u; python -c '{probe}'; test ! -e /usr/local/bin/uv; "
             "head -1 /usr/share/doc/homesec/LICENSE"],
            timeout=600,
        ).stdout.split("\n")  # fmt: skip
        assert out[:2] == ["aarch64", "10001"], out
        assert out[2].startswith("/usr/lib/python3/dist-packages/"), f"not Debian's: {out[2]}"
        assert out[3] == "MIT License", out
    sizes = ", ".join(f"{i.split('/')[1].split(':')[0]} {image_size_mb(i):.0f} MB" for i in probes)
    report(f"docker-compose.pi.yml built for arm64 in {took:.0f} s (picamera2 stubbed): {sizes}")
