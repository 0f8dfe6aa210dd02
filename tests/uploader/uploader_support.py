"""Helpers for the uploader tests: a moto S3 server on loopback, event media, a running service."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import cv2
import numpy as np
from botocore.config import Config
from moto.server import ThreadedMotoServer

from homesec.contract import TRAINING_LABELS, TrainingLabel
from homesec.media import event_dir, frame_name
from homesec.metrics import ServiceMetrics
from homesec.service import ServiceRuntime
from homesec.settings import BrokerSettings
from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import Store, make_store
from homesec_uploader.uploader import Uploader
from support import wait_until

REGION = "us-east-1"
STARTED_AT = 1764106200.0  # 2025-11-25T21:30:00Z
DAY = "2025-11-25"  # the UTC day of STARTED_AT
BUCKET = "training-bucket"  # what uploader_settings(..., s3) uploads to
EVENT_FILES = [  # the files make_event writes (default counts), in key order
    "event.json",
    "frames/000000.jpg",
    "frames/000001.jpg",
    "preroll/000000.jpg",
    "preroll/000001.jpg",
    "preroll/000002.jpg",
    "snapshot.jpg",
]


def key(event_id: str, rel: str, verdict: str = "occupied", camera: str = "front") -> str:
    """The destination key of an event file (default key prefix, event on DAY)."""
    return f"training/{verdict}/{camera}/{DAY}/{event_id}/{rel}"


class S3Server:
    """moto's standalone S3 on 127.0.0.1; can be stopped (port closed) and restarted."""

    def __init__(self) -> None:
        self.port = 0
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            wsgi = self._server._server  # moto leaves the socket listening after shutdown()
            if wsgi is not None:
                wsgi.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}),
        )


def s3_with_bucket(bucket: str) -> S3Server:
    """A started server with an empty versioned bucket (every PUT adds a version)."""
    server = S3Server()
    server.start()
    server.reset()
    client = server.client()
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return server


def versions(s3: Any, bucket: str) -> dict[str, int]:
    """Number of stored versions per key (versioning is on: every PUT adds one)."""
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    return counts


def jpeg(seed: int, width: int = 32, height: int = 24) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buf.tobytes())


def make_event(
    media_dir: Path,
    camera: str,
    event_id: str,
    *,
    started_at: float = STARTED_AT,
    preroll: int = 3,
    frames: int = 2,
    ended: bool = True,
) -> Path:
    """An event folder in the detector's layout with real small JPEGs."""
    folder = event_dir(media_dir, camera, event_id)
    (folder / "preroll").mkdir(parents=True, exist_ok=True)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    for i in range(preroll):
        (folder / "preroll" / frame_name(i)).write_bytes(jpeg(100 + i))
    for i in range(frames):
        (folder / "frames" / frame_name(i)).write_bytes(jpeg(200 + i))
    (folder / "snapshot.jpg").write_bytes(jpeg(1))
    write_event_json(folder, camera, event_id, started_at=started_at, ended=ended)
    return folder


def age(folder: Path, seconds: float) -> None:
    """Make every file of an event folder look ``seconds`` old (as if written back then)."""
    then = time.time() - seconds
    for path in folder.rglob("*"):
        os.utime(path, (then, then))


def write_event_json(
    folder: Path, camera: str, event_id: str, *, started_at: float, ended: bool
) -> None:
    meta = {
        "type": "end" if ended else "start",
        "event_id": event_id,
        "camera": camera,
        "started_at": started_at,
        "ended_at": started_at + 12.5 if ended else None,
        "frame_seq": 10,
        "frame_captured_at": started_at,
        "decision": {"alert": True, "reason": "armed, person confirmed (0.84)"},
        "detector": {"frames": 40},
    }
    (folder / "event.json").write_text(json.dumps(meta))


def label(event_id: str, camera: str = "front", verdict: str = "occupied") -> TrainingLabel:
    return TrainingLabel.model_validate(
        {
            "event_id": event_id,
            "camera": camera,
            "label": verdict,
            "labelled_by": "slack:U024BE7LH",
            "labelled_at": STARTED_AT + 60,
        }
    )


def uploader_settings(
    broker: BrokerSettings, data_dir: Path, s3: S3Server | None = None, **overrides: Any
) -> UploaderSettings:
    values: dict[str, Any] = {
        "broker": broker,
        "metrics_port": 0,
        "data_dir": data_dir,
        "interval_seconds": 60.0,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "media_wait_seconds": 60.0,
        "media_settle_seconds": 0.0,
        "keep_local_days": 0.0,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 2.0,
        "s3_max_attempts": 1,
    }
    if s3 is not None:
        values.update(
            bucket=BUCKET,
            endpoint_url=s3.url,
            region=REGION,
            addressing_style="path",
        )
    values.update(overrides)
    return UploaderSettings(**values)


@dataclass
class Running:
    """An uploader service running in-process, its loop on a thread."""

    rt: ServiceRuntime
    uploader: Uploader
    thread: threading.Thread

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.rt.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def stop(self) -> None:
        self.rt.request_stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
        self.rt.__exit__(None, None, None)
        self.uploader.close()


def start_uploader(settings: UploaderSettings, store: Store | None = None) -> Running:
    rt = ServiceRuntime("uploader", settings, install_signal_handlers=False, configure_logs=False)
    rt.__enter__()
    uploader = Uploader(rt.bus, settings, rt.metrics, store or make_store(settings))
    rt.start()
    assert rt.bus.wait_connected(10)  # online only once the broker granted the subscriptions
    thread = threading.Thread(target=uploader.run, args=(rt.stop_event,), daemon=True)
    thread.start()
    return Running(rt, uploader, thread)


class Clock:
    """A settable clock for an uploader driven by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def direct(
    make_bus: Any,
    settings: UploaderSettings,
    clock: Clock | None = None,
    name: str = "uploader",
    store: Store | None = None,
) -> Uploader:
    """An uploader driven by run_once() from the test (its bus started after subscribing)."""
    bus = make_bus(name, start=False)
    uploader = Uploader(
        bus,
        settings,
        ServiceMetrics("uploader"),
        store or make_store(settings),
        clock or Clock(2e9),
    )
    bus.start()
    assert bus.wait_connected(10)
    return uploader


# ---- driving an uploader from a test ------------------------------------------------------------


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.*")}


def sample(uploader: Uploader, name: str) -> float:
    return uploader.registry.get_sample_value(name) or 0.0


def received(uploader: Uploader) -> float:
    return sum(
        uploader.registry.get_sample_value("homesec_uploader_labels_received_total", {"label": v})
        or 0.0
        for v in ("occupied", "unoccupied")
    )


def send(make_bus: Any, uploader: Uploader, *labels: TrainingLabel) -> None:
    """Publish labels and wait until the uploader's handler has taken each one."""
    expected = received(uploader) + len(labels)
    client = make_bus("client")
    for item in labels:
        assert client.publish_confirmed(TRAINING_LABELS, item)
    wait_until(lambda: received(uploader) == expected)
    client.stop(timeout=1)


def stop(uploader: Uploader) -> None:
    uploader.bus.stop(timeout=1)
    uploader.close()


def bucket_objects(s3c: Any) -> dict[str, bytes]:
    """The current (not deleted) objects of the bucket and their bytes."""
    keys = [o["Key"] for o in s3c.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return {k: s3c.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}
