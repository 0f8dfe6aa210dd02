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


def evaluate(
    image: str, platform: str, path: str, *args: str, **env: str
) -> list[dict[str, object]]:
    """``homesec eval --json`` of ``path`` (under tests/assets) inside ``image``: one dict per
    frame, then the summary."""
    command = ["docker", "run", "--rm", "--network", "none", "--platform", platform,
               "-v", f"{REPO / 'tests' / 'assets'}:/assets:ro", "--entrypoint", "homesec"]  # fmt: skip
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    out = run([*command, image, "eval", f"/assets/{path}", "--json", *args], timeout=1200)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def decisions(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    keys = ("frame", "motion", "event_id", "alert")
    return [tuple(r.get(k) for k in keys) for r in rows if "frame" in r]


def test_engine_arm64_detector_decides_as_on_x86(arm64_images: dict[str, str]) -> None:
    """The motion pipeline on a clip, frame by frame, and the person model on still images.

    The clip runs with the person check off: with it on, how many frames get checked depends on
    a CPU-time budget (PERSON_CPU_FRACTION), and under qemu the model is ~60x slower, so an
    emulated run checks fewer frames than a real Pi would. The person model itself is compared
    on every still image (--score-all)."""
    x86_image = f"homesec/detector:{IMAGE_TAG}"
    started = time.monotonic()
    runs = {}
    for name, image, platform in (
        ("x86", x86_image, "linux/amd64"),
        ("arm64", arm64_images["detector"], "linux/arm64"),
    ):
        clip = evaluate(image, platform, f"video/{CLIP}", HOMESEC_DETECTOR_PERSON_MODE="off")
        stills = evaluate(image, platform, "images", "--score-all")
        runs[name] = (clip, stills)
    took = time.monotonic() - started
    (x86_clip, x86_stills), (arm_clip, arm_stills) = runs["x86"], runs["arm64"]
    assert decisions(x86_clip), f"no per-frame output: {x86_clip[-2:]}"
    assert decisions(arm_clip) == decisions(x86_clip), "arm64 and x86 decide differently"
    events = {d[2] for d in decisions(x86_clip) if d[2]}
    alerts = sum(1 for d in decisions(x86_clip) if d[3])
    assert events and alerts, "the clip produced no alerting event: the comparison proves little"
    scores = [(a.get("person_score"), b.get("person_score")) for a, b in
              zip(arm_stills, x86_stills, strict=True) if "frame" in a]  # fmt: skip
    assert len(scores) >= 5 and any(isinstance(b, float) and b > 0.5 for _, b in scores), scores
    for a, b in scores:
        assert isinstance(a, float) and isinstance(b, float) and abs(a - b) < 0.01, scores
    report(
        f"arm64 eval same as x86: {CLIP} {len(decisions(arm_clip))} frames, {len(events)} "
        f"event(s), same motion/event/alert per frame; person model on {len(scores)} stills, "
        f"scores within 0.01 ({took:.0f} s for both)"
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
