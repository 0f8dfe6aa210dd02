"""Clip benchmark: what an event's clip costs (CPU, bytes) with each format and encoder at hand.

    uv run python bench/clip.py [--frames 60] [--repeat 3]
    uv run --with av --with pillow python bench/clip.py     # adds PyAV (x264) and GIF rows

One event's clip: ``--frames`` frames (default 60: 3 s of pre-roll and the first 3 s of the
event at 10 fps) of the road footage (tests/assets, real cars), scaled to 640x480 and stored as
the camera stores them (JPEG, quality 80). Two scenes: as filmed, and with sensor noise added
(sigma 6, what a cheap camera gives at dusk), which is what makes clips big. For each candidate
it prints the CPU seconds per clip (process CPU time, every thread, best of ``--repeat``),
the size, the ratios against two baselines measured in the same run (CPU: only decoding the
JPEGs, which every re-encode pays; size: the JPEG frames as stored today), the upload time on
a 5 Mbit/s uplink, the mean PSNR of the decoded frames against the camera's (at the clip's own
size) and whether the file decodes back (OpenCV; GIF: Pillow) with every frame.
OpenH264 and the x264 "600 kbit/s" row are capped at homesec's default bitrate.
Candidates whose package is missing are listed as such.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

from homesec_detector.clip import ClipFrame, encode_clip
from homesec_detector.openh264 import available as openh264_available

VIDEO = Path(__file__).resolve().parents[1] / "tests/assets/video/road_640x360.avi"
SIZE = (640, 480)
FPS = 10
UPLINK_BITS = 5_000_000

Encoder = Callable[[list[bytes], Path], Path]


@dataclass
class Candidate:
    name: str
    licence: str
    encode: Encoder | None
    missing: str = ""


def load_frames(count: int, noise: float) -> list[bytes]:
    capture = cv2.VideoCapture(str(VIDEO))
    rng = np.random.default_rng(7)
    frames: list[bytes] = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        image = cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA)
        if noise:
            grain = rng.normal(0, noise, image.shape)
            image = np.clip(image.astype(np.float32) + grain, 0, 255).astype(np.uint8)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return frames


def decode_all(jpegs: list[bytes]) -> list[np.ndarray]:
    return [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]


# ---- candidates ------------------------------------------------------------------------------


def openh264_mp4(width: int) -> Encoder:
    def encode(jpegs: list[bytes], out: Path) -> Path:
        frames = [ClipFrame(j, n / FPS) for n, j in enumerate(jpegs)]
        path = out / f"openh264_{width}.mp4"
        path.write_bytes(encode_clip(frames, max_width=width).data)
        return path

    return encode


def opencv_writer(fourcc: str, ext: str) -> Encoder:
    def encode(jpegs: list[bytes], out: Path) -> Path:
        path = out / f"opencv_{fourcc}{ext}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, SIZE)
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {fourcc} {ext}")
        for image in decode_all(jpegs):
            writer.write(image)
        writer.release()
        return path

    return encode


def pyav_x264(bitrate: int | None) -> Encoder:
    """x264, preset veryfast, one thread: CRF 28, or capped at ``bitrate`` like OpenH264."""

    def encode(jpegs: list[bytes], out: Path) -> Path:
        import av  # type: ignore[import-not-found]

        path = out / "pyav_x264.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height = SIZE
            stream.pix_fmt = "yuv420p"
            stream.thread_count = 1
            options = {"preset": "veryfast"}
            if bitrate is None:
                options["crf"] = "28"
            else:
                stream.bit_rate = bitrate
                options["maxrate"] = str(bitrate)
                options["bufsize"] = str(bitrate)
            stream.codec_context.options = options
            for image in decode_all(jpegs):
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        return path

    return encode


def pillow_gif(width: int) -> Encoder:
    def encode(jpegs: list[bytes], out: Path) -> Path:
        from PIL import Image  # type: ignore[import-not-found]

        height = SIZE[1] * width // SIZE[0]
        images = []
        for image in decode_all(jpegs):
            small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            rgb = Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
            images.append(rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT))
        path = out / f"pillow_{width}.gif"
        images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // FPS, loop=0)
        return path

    return encode


def candidates() -> list[Candidate]:
    found: list[Candidate] = []
    openh264 = "" if openh264_available() else "libopenh264 not installed"
    for width in (640, 320):
        found.append(
            Candidate(
                f"H.264 MP4, OpenH264 (homesec), {width} wide",
                "BSD-2-Clause",
                openh264_mp4(width),
                openh264,
            )
        )
    found += [
        Candidate("MPEG-4 Part 2 MP4, OpenCV mp4v", "LGPL FFmpeg", opencv_writer("mp4v", ".mp4")),
        Candidate("VP8 WebM, OpenCV (libvpx)", "BSD libvpx", opencv_writer("VP80", ".webm")),
        Candidate("VP9 WebM, OpenCV (libvpx)", "BSD libvpx", opencv_writer("VP90", ".webm")),
        Candidate("Motion JPEG AVI, OpenCV", "LGPL FFmpeg", opencv_writer("MJPG", ".avi")),
    ]
    try:
        import av  # type: ignore[import-not-found]  # noqa: F401

        missing = ""
    except ImportError:
        missing = "PyAV not installed"
    found += [
        Candidate(
            "H.264 MP4, PyAV libx264 veryfast CRF 28", "GPL-2.0+ (x264)", pyav_x264(None), missing
        ),
        Candidate(
            "H.264 MP4, PyAV libx264 veryfast 600 kbit/s",
            "GPL-2.0+ (x264)",
            pyav_x264(600_000),
            missing,
        ),
    ]
    try:
        import PIL  # type: ignore[import-not-found]  # noqa: F401

        missing = ""
    except ImportError:
        missing = "Pillow not installed"
    for width in (640, 320):
        found.append(
            Candidate(f"animated GIF, Pillow, {width} wide", "MIT-CMU", pillow_gif(width), missing)
        )
    return found


# ---- measuring -------------------------------------------------------------------------------


def cpu_best(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def decoded(path: Path) -> list[np.ndarray]:
    """The file's frames as BGR images, decoded back."""
    if path.suffix == ".gif":
        from PIL import Image, ImageSequence  # type: ignore[import-not-found]

        with Image.open(path) as gif:
            return [
                cv2.cvtColor(np.asarray(f.convert("RGB")), cv2.COLOR_RGB2BGR)
                for f in ImageSequence.Iterator(gif)
            ]
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image)


def psnr(sources: list[np.ndarray], frames: list[np.ndarray]) -> float:
    """Mean PSNR (dB) of the decoded frames against the camera's, at the clip's size."""
    values = []
    for source, frame in zip(sources, frames, strict=False):
        if source.shape != frame.shape:
            source = cv2.resize(source, frame.shape[1::-1], interpolation=cv2.INTER_AREA)
        values.append(cv2.PSNR(source, frame))
    return float(np.mean(values)) if values else 0.0


def row(
    cand: Candidate, jpegs: list[bytes], sources: list[np.ndarray], decode_cpu: float, repeat: int
) -> str:
    """One table row: encode ``repeat`` times, then decode the file back and compare."""
    stored = sum(len(j) for j in jpegs)
    if cand.encode is None or cand.missing:
        return f"| {cand.name} | {cand.licence} | ({cand.missing}) | | | | | | |"
    encode = cand.encode
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        try:
            cpu = cpu_best(lambda: encode(jpegs, out), repeat)
            path = encode(jpegs, out)
        except Exception as exc:  # a build without this codec
            return f"| {cand.name} | {cand.licence} | failed: {exc} | | | | | | |"
        size = path.stat().st_size
        frames = decoded(path)
    return (
        f"| {cand.name} | {cand.licence} | {cpu:.3f} | {cpu / decode_cpu:.1f}x "
        f"| {size / 1024:.0f} | {size / stored:.2f} | {size * 8 / UPLINK_BITS:.2f} s "
        f"| {psnr(sources, frames):.1f} | {len(frames)}/{len(jpegs)} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"clip of {args.frames} frames at {SIZE[0]}x{SIZE[1]}, {FPS} fps; cv2 {cv2.__version__}")
    for scene, noise in (("as filmed", 0.0), ("sensor noise", 6.0)):
        jpegs = load_frames(args.frames, noise)
        stored = sum(len(j) for j in jpegs)
        decode_cpu = cpu_best(lambda jpegs=jpegs: decode_all(jpegs), args.repeat)
        sources = decode_all(jpegs)
        print(
            f"\n## {scene}: JPEG frames {stored / 1024:.0f} KiB, decoding them {decode_cpu:.3f} s CPU"
        )
        print(
            "| candidate | licence | CPU s/clip | x decode | KiB | x JPEGs | upload @5 Mbit/s "
            "| PSNR dB | frames decoded |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for cand in candidates():
            print(row(cand, jpegs, sources, decode_cpu, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
