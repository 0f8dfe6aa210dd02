"""Orientation and JPEG encoding of captured frames."""

from __future__ import annotations

import cv2
import numpy as np

_ROTATIONS = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


def orient(
    frame: np.ndarray, *, rotate: int = 0, hflip: bool = False, vflip: bool = False
) -> np.ndarray:
    """Apply flips, then a clockwise rotation of 0/90/180/270 degrees.

    An upside-down mount (the original project) is ``hflip=vflip=True`` (same as ``rotate=180``)."""
    if hflip and vflip:
        frame = cv2.flip(frame, -1)
    elif hflip:
        frame = cv2.flip(frame, 1)
    elif vflip:
        frame = cv2.flip(frame, 0)
    if rotate:
        frame = cv2.rotate(frame, _ROTATIONS[rotate])
    return frame


class JpegEncoder:
    """``cv2.imencode`` with a fixed quality."""

    def __init__(self, quality: int) -> None:
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]

    def encode(self, frame: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", frame, self._params)
        if not ok:
            raise ValueError(f"JPEG encoding failed for a frame of shape {frame.shape}")
        return buf.tobytes()
