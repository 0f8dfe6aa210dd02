"""Motion: the original running-average background subtraction, on a small greyscale frame.

Same maths as the original (blur → ``accumulateWeighted`` → ``absdiff`` → threshold → dilate →
external contours → occupied if a contour is large enough), with its knobs and defaults, but:

* the JPEG is decoded straight to reduced greyscale (``IMREAD_REDUCED_GRAYSCALE_2/4/8``, chosen
  from the frame width and ``analysis_width``) instead of decode → resize → convert;
* size-dependent knobs are expressed at the original's ``frame_width`` (500 px) and scaled to the
  analysis size: the 21x21 blur becomes ~7x7 on a 160-wide frame, and ``min_area`` (5000 px on
  500x375) is a fraction of the frame (``min_area_fraction`` = 0.0267) so it holds at any size;
* optional contrast normalisation, polygon masks, day/night profiles;
* a sudden-global-change guard: when more than ``global_change_fraction`` of the frame changes at
  once (lights, IR switch, clouds) the background is re-learnt instead of reporting motion.

Buffers are reused between frames (``dst=`` arguments); only the decode allocates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, Field, field_validator

ORIGINAL_MIN_AREA = 5000.0
ORIGINAL_FRAME = (500, 375)
"""The original's min_area (px) and the 640x480 frame resized to 500 wide it applied to."""

Point = tuple[float, float]
BoxXYWH = tuple[int, int, int, int]

_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4))
_REDUCED_2 = (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)


class MotionSettings(BaseModel):
    """Every knob of the original motion detector (defaults = the original), plus additions."""

    frame_width: int = Field(
        500, ge=16, le=8192, description="Original's analysis width; ksize is given at this width"
    )
    analysis_width: int = Field(
        160,
        ge=16,
        le=8192,
        description="Target width of the reduced greyscale decode (largest 1/2/4/8 reduction "
        "that keeps at least this width)",
    )
    ksize: int = Field(21, ge=1, le=99, description="Gaussian blur kernel at frame_width (odd)")
    alpha: float = Field(0.1, gt=0, le=1, description="accumulateWeighted background update rate")
    delta_thresh: int = Field(5, ge=1, le=254, description="Per-pixel difference threshold")
    dilate_iterations: int = Field(2, ge=0, le=20, description="Dilation passes (3x3 kernel)")
    min_area_fraction: float = Field(
        ORIGINAL_MIN_AREA / (ORIGINAL_FRAME[0] * ORIGINAL_FRAME[1]),
        ge=0,
        le=1,
        description="A contour larger than this fraction of the frame makes it occupied "
        "(original: min_area 5000 px on 500x375 = 0.0267)",
    )
    check_area_fraction: float = Field(
        0.003,
        ge=0,
        le=1,
        description="A contour larger than this fraction of the frame gets a person check even "
        "when it is too small to make the frame occupied (a person far away); 0: only "
        "occupied frames are checked",
    )
    contrast_normalize: bool = Field(
        False, description="Stretch each small frame to 0-255 before blurring"
    )
    masks: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons to ignore, in relative coordinates (0-1), e.g. [[[0,0],[1,0],[1,0.1]]]",
    )
    global_change_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="More than this fraction of the frame changing at once re-learns the "
        "background instead of reporting motion (0 disables)",
    )
    relight_delta_thresh: int = Field(
        6,
        ge=0,
        le=254,
        description="On a global change, the frame is matched to the old background in "
        "brightness and contrast; pixels still differing by more than this are reported as "
        "relit regions for the person check (0: check the whole frame instead)",
    )
    night_mean_below: float = Field(
        0.0, ge=0, le=255, description="Mean grey level under which the night profile applies"
    )
    night_delta_thresh: int | None = Field(None, ge=1, le=254)
    night_min_area_fraction: float | None = Field(None, ge=0, le=1)

    @field_validator("masks")
    @classmethod
    def _polygons(cls, masks: list[list[Point]]) -> list[list[Point]]:
        for poly in masks:
            if len(poly) < 3:
                raise ValueError("a mask polygon needs at least 3 points")
            for x, y in poly:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise ValueError("mask coordinates are fractions of the frame (0-1)")
        return masks


@dataclass
class MotionResult:
    """What one frame showed."""

    occupied: bool
    boxes: list[BoxXYWH] = field(default_factory=list)
    """Boxes of contours above the area threshold, full-frame pixels, largest first."""
    largest_area: float = 0.0
    """Largest contour area, fraction of the frame."""
    changed_fraction: float = 0.0
    """Fraction of (unmasked) pixels above the threshold."""
    reset: bool = False
    """True when the background was (re)learnt from this frame (first frame or guard)."""
    global_change: bool = False
    """The global-change guard fired on this frame (lights, IR switch): no motion reported."""
    check_boxes: list[BoxXYWH] = field(default_factory=list)
    """Boxes of contours above ``check_area_fraction`` (``boxes`` included), largest first: where
    the person check looks."""
    relit_boxes: list[BoxXYWH] = field(default_factory=list)
    """On a global change: regions that still differ from the old background once brightness
    and contrast are matched (full-frame pixels, largest first); empty when none do."""
    relit_whole: bool = False
    """On a global change: matching failed (most of the frame still differs): look at all of it."""
    relight: tuple[float, float] | None = None
    """On a global change: (gain, offset) that map this frame's grey levels to the old
    background's; the person check applies it so the model sees the scene as it was lit."""
    profile: str = "day"
    size: tuple[int, int] = (0, 0)
    """Full frame (width, height)."""

    @property
    def largest_box(self) -> BoxXYWH | None:
        return self.boxes[0] if self.boxes else None

    @property
    def union_box(self) -> BoxXYWH | None:
        if not self.boxes:
            return None
        x0 = min(b[0] for b in self.boxes)
        y0 = min(b[1] for b in self.boxes)
        x1 = max(b[0] + b[2] for b in self.boxes)
        y1 = max(b[1] + b[3] for b in self.boxes)
        return (x0, y0, x1 - x0, y1 - y0)


def reduction_for(width: int, analysis_width: int) -> tuple[int, int]:
    """(factor, imread flag) of the largest JPEG-native reduction keeping >= analysis_width."""
    for factor, flag in (*_REDUCED, _REDUCED_2):
        if width // factor >= analysis_width:
            return factor, flag
    return 1, cv2.IMREAD_GRAYSCALE


def odd_at_least_1(value: float) -> int:
    k = max(1, int(round(value)))
    return k if k % 2 else k + 1


class MotionDetector:
    """Running-average background subtraction for one camera (not thread-safe)."""

    def __init__(self, settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self.background_resets = 0
        """Guard resets (global changes), not counting the first frame."""
        self._shape: tuple[int, int] | None = None
        self._night = False

    # ---- buffers --------------------------------------------------------------------------

    def _allocate(self, h: int, w: int) -> None:
        s = self.settings
        self._shape = (h, w)
        self._avg = np.zeros((h, w), np.float32)
        self._avg8 = np.zeros((h, w), np.uint8)
        self._blur = np.zeros((h, w), np.uint8)
        self._delta = np.zeros((h, w), np.uint8)
        self._thresh = np.zeros((h, w), np.uint8)
        self._dilated = np.zeros((h, w), np.uint8)
        k = odd_at_least_1(s.ksize * w / s.frame_width)
        self._ksize = (k, k)
        self._kernel = np.ones((3, 3), np.uint8)
        self._mask: np.ndarray | None = None
        self._mask_pixels = h * w
        if s.masks:
            keep = np.full((h, w), 255, np.uint8)
            for poly in s.masks:
                pts = np.array([[x * (w - 1), y * (h - 1)] for x, y in poly], np.float32)
                cv2.fillPoly(keep, [pts.round().astype(np.int32)], 0)
            self._mask = keep
            self._mask_pixels = max(1, int(cv2.countNonZero(keep)))
        self._primed = False

    @property
    def analysis_size(self) -> tuple[int, int] | None:
        """(width, height) of the small frame, once a frame was seen."""
        return None if self._shape is None else (self._shape[1], self._shape[0])

    def reset(self) -> None:
        """Forget the background; the next frame becomes it."""
        self._primed = False

    # ---- per frame ------------------------------------------------------------------------

    def decode(self, jpeg: bytes, width: int) -> np.ndarray | None:
        """Decode straight to reduced greyscale (None if the bytes are not an image)."""
        _, flag = reduction_for(width, self.settings.analysis_width)
        buf = np.frombuffer(jpeg, np.uint8)
        gray = cv2.imdecode(buf, flag)
        return gray

    def process_jpeg(self, jpeg: bytes, width: int, height: int) -> MotionResult | None:
        """Motion in one JPEG frame of ``width`` x ``height``; None if it does not decode."""
        gray = self.decode(jpeg, width)
        if gray is None:
            return None
        return self.process_gray(gray, (width, height))

    def process_gray(self, gray: np.ndarray, full_size: tuple[int, int]) -> MotionResult:
        """Motion in an already reduced greyscale frame; boxes are mapped to ``full_size``."""
        s = self.settings
        h, w = gray.shape[:2]
        if self._shape != (h, w):
            self._allocate(h, w)
        if s.contrast_normalize:
            cv2.normalize(gray, self._blur, 0, 255, cv2.NORM_MINMAX)
            cv2.GaussianBlur(self._blur, self._ksize, 0, dst=self._blur)
        else:
            cv2.GaussianBlur(gray, self._ksize, 0, dst=self._blur)
        profile = self._profile()
        if not self._primed:
            self._avg[:] = self._blur
            self._primed = True
            return MotionResult(occupied=False, reset=True, profile=profile, size=full_size)

        cv2.accumulateWeighted(self._blur, self._avg, s.alpha)
        cv2.convertScaleAbs(self._avg, dst=self._avg8)
        cv2.absdiff(self._blur, self._avg8, dst=self._delta)
        thresh_value = s.night_delta_thresh if profile == "night" and s.night_delta_thresh else None
        cv2.threshold(
            self._delta, thresh_value or s.delta_thresh, 255, cv2.THRESH_BINARY, dst=self._thresh
        )
        if self._mask is not None:
            cv2.bitwise_and(self._thresh, self._mask, dst=self._thresh)
        changed = cv2.countNonZero(self._thresh) / self._mask_pixels
        if s.global_change_fraction and changed > s.global_change_fraction:
            relit, whole, relight = self._relit(full_size)
            self._avg[:] = self._blur
            self.background_resets += 1
            return MotionResult(
                occupied=False,
                changed_fraction=changed,
                reset=True,
                global_change=True,
                relit_boxes=relit,
                relit_whole=whole,
                relight=relight,
                profile=profile,
                size=full_size,
            )

        min_frac = s.min_area_fraction
        if profile == "night" and s.night_min_area_fraction is not None:
            min_frac = s.night_min_area_fraction
        check_frac = min(min_frac, s.check_area_fraction) if s.check_area_fraction else min_frac
        regions = self._regions(check_frac, full_size)
        min_px = min_frac * w * h
        found = [(area, box) for area, box in regions if area > min_px]
        return MotionResult(
            occupied=bool(found),
            boxes=[b for _, b in found],
            check_boxes=[b for _, b in regions],
            largest_area=found[0][0] / (w * h) if found else 0.0,
            changed_fraction=changed,
            profile=profile,
            size=full_size,
        )

    def _regions(self, min_frac: float, full_size: tuple[int, int]) -> list[tuple[float, BoxXYWH]]:
        """Dilate ``_thresh``; (area px, full-frame box) of contours above ``min_frac`` of the
        frame, largest first."""
        s = self.settings
        h, w = self._thresh.shape
        if s.dilate_iterations:
            cv2.dilate(
                self._thresh, self._kernel, dst=self._dilated, iterations=s.dilate_iterations
            )
            binary = self._dilated
        else:
            binary = self._thresh
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_px = min_frac * w * h
        sx, sy = full_size[0] / w, full_size[1] / h
        found: list[tuple[float, BoxXYWH]] = []
        for contour in contours:
            area = cv2.contourArea(contour)
            if area > min_px:
                x, y, bw, bh = cv2.boundingRect(contour)
                box = (int(x * sx), int(y * sy), int(round(bw * sx)), int(round(bh * sy)))
                found.append((area, box))
        found.sort(key=lambda item: item[0], reverse=True)
        return found

    def _relit(
        self, full_size: tuple[int, int]
    ) -> tuple[list[BoxXYWH], bool, tuple[float, float] | None]:
        """Regions of the new frame that differ from the old background once the new frame's
        brightness and contrast are matched to it (a lamp, clouds, the IR switch change the
        whole frame alike; a person entering meanwhile does not). Uses ``_avg8``/``_blur``
        before the background is re-learnt; ``(boxes, look at the whole frame, (gain, offset))``."""
        s = self.settings
        if not s.relight_delta_thresh:
            return [], True, None
        # clipped pixels (a sky going white, a room going black) follow no gain: left out
        usable = cv2.inRange(self._blur, 6, 249)
        if self._mask is not None:
            cv2.bitwise_and(usable, self._mask, dst=usable)
        pixels = max(1, cv2.countNonZero(usable))
        mask = usable
        for _ in range(2):  # fit, then refit on the pixels the first fit explains
            mean_new, std_new = cv2.meanStdDev(self._blur, mask=mask)
            mean_old, std_old = cv2.meanStdDev(self._avg8, mask=mask)
            gain = float(std_old[0, 0]) / max(float(std_new[0, 0]), 1.0)
            offset = float(mean_old[0, 0]) - gain * float(mean_new[0, 0])
            # saturating gain * new + offset, minus the old background
            cv2.addWeighted(self._blur, gain, self._blur, 0.0, offset, dst=self._delta)
            cv2.absdiff(self._delta, self._avg8, dst=self._delta)
            cv2.threshold(
                self._delta, s.relight_delta_thresh, 255, cv2.THRESH_BINARY, dst=self._thresh
            )
            cv2.bitwise_and(self._thresh, usable, dst=self._thresh)
            mask = cv2.bitwise_and(cv2.bitwise_not(self._thresh), usable)
            if cv2.countNonZero(mask) < pixels // 4:
                break  # most of the frame is unexplained: keep the first fit's verdict
        still = cv2.countNonZero(self._thresh) / pixels
        if pixels < self._mask_pixels // 4 or still > s.global_change_fraction / 2:
            return [], True, None
        check_frac = min(s.min_area_fraction, s.check_area_fraction or 1.0)
        boxes = [box for _, box in self._regions(check_frac, full_size)]
        return boxes, False, (gain, offset)

    def _profile(self) -> str:
        s = self.settings
        if s.night_mean_below <= 0:
            return "day"
        mean = float(cv2.mean(self._blur)[0])
        # 5 grey levels of hysteresis so the profile does not flicker at dusk
        if self._night:
            self._night = mean < s.night_mean_below + 5
        else:
            self._night = mean < s.night_mean_below
        return "night" if self._night else "day"
