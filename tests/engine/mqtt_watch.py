"""An MQTT client on the stack's published broker port: records what it sees, publishes as any
broker user (to test the ACLs)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from support import wait_until


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float


class Watch:
    """Connects as ``user``, subscribes ``topics`` (QoS 1) and keeps every message."""

    def __init__(self, port: int, user: str, password: str, *topics: str) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"engine-test-{user}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.5, 2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self._connected.is_set, 20)

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if not getattr(rc, "is_failure", False):
            for topic in self._topics:
                client.subscribe(topic, qos=1)
            self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), time.time()))

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, user: str, password: str, topic: str, timeout: float = 10) -> bytes:
    """The retained value of ``topic`` as a fresh subscriber gets it."""
    watch = Watch(port, user, password, topic)
    try:
        found = wait_until(lambda: [m for m in watch.on(topic) if m.retain], timeout)
        return bytes(found[-1].payload)
    finally:
        watch.close()
