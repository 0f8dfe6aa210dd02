"""H.264 encoding with Cisco's OpenH264 (BSD-2-Clause), called through ctypes.

The library is the system's ``libopenh264`` (Debian/Raspberry Pi OS ``libopenh264-7``, or
Cisco's own binary of the same version for its patent licence: see docs/deployment.md), loaded
at first use; nothing is compiled. The C interface is ``WelsCreateSVCEncoder`` plus a table of
function pointers (``ISVCEncoderVtbl``); the structures below mirror ``codec_app_def.h``, whose
layout has stayed the same from release 1.x to 2.x. Output is Annex B (start codes), one access
unit per frame: Constrained Baseline profile, 8-bit 4:2:0, which every H.264 player decodes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np

LIBRARY_NAMES = ("libopenh264.so.8", "libopenh264.so.7", "libopenh264.so.6", "libopenh264.so")
"""Tried in order; ``ctypes.util.find_library("openh264")`` after them."""

_MAX_LAYERS = 128  # MAX_LAYER_NUM_OF_FRAME
_I420 = 23  # videoFormatI420
_CAMERA_VIDEO_REAL_TIME = 0  # EUsageType
_RC_BITRATE_MODE = 1  # RC_MODES
_FRAME_SKIP = 4  # videoFrameTypeSkip
_FRAME_INVALID = 0  # videoFrameTypeInvalid
# ENCODER_OPTION values (their position in the enum)
_OPT_IDR_INTERVAL = 1
_OPT_RC_FRAME_SKIP = 9
_OPT_COMPLEXITY = 19
_OPT_SPS_PPS_ID_STRATEGY = 22
_OPT_TRACE_LEVEL = 25
_LOG_QUIET = 0
_CONSTANT_ID = 0  # EParameterSetStrategy: every IDR repeats SPS/PPS id 0 (default: a new id)


class EncParamBase(ctypes.Structure):
    _fields_ = [
        ("iUsageType", ctypes.c_int),
        ("iPicWidth", ctypes.c_int),
        ("iPicHeight", ctypes.c_int),
        ("iTargetBitrate", ctypes.c_int),
        ("iRCMode", ctypes.c_int),
        ("fMaxFrameRate", ctypes.c_float),
    ]


class SourcePicture(ctypes.Structure):
    _fields_ = [
        ("iColorFormat", ctypes.c_int),
        ("iStride", ctypes.c_int * 4),
        ("pData", ctypes.POINTER(ctypes.c_ubyte) * 4),
        ("iPicWidth", ctypes.c_int),
        ("iPicHeight", ctypes.c_int),
        ("uiTimeStamp", ctypes.c_longlong),
    ]


class LayerBSInfo(ctypes.Structure):
    _fields_ = [
        ("uiTemporalId", ctypes.c_ubyte),
        ("uiSpatialId", ctypes.c_ubyte),
        ("uiQualityId", ctypes.c_ubyte),
        ("eFrameType", ctypes.c_int),
        ("uiLayerType", ctypes.c_ubyte),
        ("iSubSeqId", ctypes.c_int),
        ("iNalCount", ctypes.c_int),
        ("pNalLengthInByte", ctypes.POINTER(ctypes.c_int)),
        ("pBsBuf", ctypes.POINTER(ctypes.c_ubyte)),
    ]


class FrameBSInfo(ctypes.Structure):
    _fields_ = [
        ("iLayerNum", ctypes.c_int),
        ("sLayerInfo", LayerBSInfo * _MAX_LAYERS),
        ("eFrameType", ctypes.c_int),
        ("iFrameSizeInBytes", ctypes.c_int),
        ("uiTimeStamp", ctypes.c_longlong),
    ]


class _Vtbl(ctypes.Structure):
    """ISVCEncoderVtbl: each function takes the ``ISVCEncoder*`` first."""

    _fields_ = [
        ("Initialize", ctypes.c_void_p),
        ("InitializeExt", ctypes.c_void_p),
        ("GetDefaultParams", ctypes.c_void_p),
        ("Uninitialize", ctypes.c_void_p),
        ("EncodeFrame", ctypes.c_void_p),
        ("EncodeParameterSets", ctypes.c_void_p),
        ("ForceIntraFrame", ctypes.c_void_p),
        ("SetOption", ctypes.c_void_p),
        ("GetOption", ctypes.c_void_p),
    ]


_Encoder = ctypes.POINTER(ctypes.POINTER(_Vtbl))  # ISVCEncoder* (ISVCEncoder is a vtbl pointer)
_INIT = ctypes.CFUNCTYPE(ctypes.c_int, _Encoder, ctypes.POINTER(EncParamBase))
_UNINIT = ctypes.CFUNCTYPE(ctypes.c_int, _Encoder)
_ENCODE = ctypes.CFUNCTYPE(
    ctypes.c_int, _Encoder, ctypes.POINTER(SourcePicture), ctypes.POINTER(FrameBSInfo)
)
_SET_OPTION = ctypes.CFUNCTYPE(ctypes.c_int, _Encoder, ctypes.c_int, ctypes.c_void_p)


class OpenH264Unavailable(RuntimeError):
    """libopenh264 is not installed (or not loadable)."""


class EncodeError(RuntimeError):
    """The encoder refused its parameters or a frame."""


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def load_library(path: str | None = None) -> ctypes.CDLL:
    """The OpenH264 library: ``path`` when given, else the first of :data:`LIBRARY_NAMES`."""
    global _lib
    with _lib_lock:
        if path is None and _lib is not None:
            return _lib
        names = [path] if path else [*LIBRARY_NAMES, ctypes.util.find_library("openh264")]
        errors = []
        for name in names:
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
            except OSError as exc:
                errors.append(str(exc))
                continue
            lib.WelsCreateSVCEncoder.argtypes = [ctypes.POINTER(_Encoder)]
            lib.WelsCreateSVCEncoder.restype = ctypes.c_int
            lib.WelsDestroySVCEncoder.argtypes = [_Encoder]
            lib.WelsDestroySVCEncoder.restype = None
            if path is None:
                _lib = lib
            return lib
        raise OpenH264Unavailable(
            "libopenh264 not found (apt-get install libopenh264-7): " + "; ".join(errors)[:300]
        )


def available(path: str | None = None) -> bool:
    try:
        load_library(path)
    except OpenH264Unavailable:
        return False
    return True


@dataclass(frozen=True)
class EncoderSettings:
    width: int
    height: int
    bitrate: int = 500_000  # bits per second
    fps: float = 10.0
    idr_interval: int = 0  # frames between key frames; 0: only the first
    complexity: int = 0  # 0 low (fastest), 1 medium, 2 high


class H264Encoder:
    """One H.264 stream: :meth:`encode` an I420 frame → its NAL units (without start codes)."""

    def __init__(self, settings: EncoderSettings, library: str | None = None) -> None:
        if settings.width % 2 or settings.height % 2:
            raise EncodeError(f"odd frame size {settings.width}x{settings.height}")
        self.settings = settings
        self._lib = load_library(library)
        self._encoder = _Encoder()
        if self._lib.WelsCreateSVCEncoder(ctypes.byref(self._encoder)) != 0 or not self._encoder:
            raise EncodeError("WelsCreateSVCEncoder failed")
        vtbl = self._encoder.contents.contents
        self._uninit = _UNINIT(vtbl.Uninitialize)
        self._encode = _ENCODE(vtbl.EncodeFrame)
        self._set_option = _SET_OPTION(vtbl.SetOption)
        self._initialised = False
        try:
            self._option_int(_OPT_TRACE_LEVEL, _LOG_QUIET)
            params = EncParamBase(
                _CAMERA_VIDEO_REAL_TIME,
                settings.width,
                settings.height,
                settings.bitrate,
                _RC_BITRATE_MODE,
                settings.fps,
            )
            if _INIT(vtbl.Initialize)(self._encoder, ctypes.byref(params)) != 0:
                raise EncodeError(f"encoder refused its parameters {settings}")
            self._initialised = True
            self._option_int(_OPT_TRACE_LEVEL, _LOG_QUIET)
            self._option_int(_OPT_IDR_INTERVAL, settings.idr_interval)
            self._option_int(_OPT_COMPLEXITY, settings.complexity)
            self._option_int(_OPT_SPS_PPS_ID_STRATEGY, _CONSTANT_ID)
            skip = ctypes.c_bool(False)  # every frame is coded: the clip keeps its frame count
            self._set_option(self._encoder, _OPT_RC_FRAME_SKIP, ctypes.addressof(skip))
        except BaseException:
            self.close()
            raise
        self._info = FrameBSInfo()
        self._picture = SourcePicture()
        self._picture.iColorFormat = _I420
        self._picture.iPicWidth = settings.width
        self._picture.iPicHeight = settings.height
        w = settings.width
        self._picture.iStride[0], self._picture.iStride[1], self._picture.iStride[2] = (
            w,
            w // 2,
            w // 2,
        )

    def _option_int(self, option: int, value: int) -> None:
        number = ctypes.c_int(value)
        self._set_option(self._encoder, option, ctypes.addressof(number))

    def encode(self, i420: np.ndarray, timestamp_ms: int) -> list[bytes]:
        """Encode one frame (``cv2.COLOR_BGR2YUV_I420`` layout: height*3/2 x width, uint8)."""
        w, h = self.settings.width, self.settings.height
        if i420.shape != (h * 3 // 2, w) or i420.dtype != np.uint8:
            raise EncodeError(f"frame shape {i420.shape}, expected {(h * 3 // 2, w)}")
        frame = np.ascontiguousarray(i420)
        base = frame.ctypes.data
        ptr = ctypes.POINTER(ctypes.c_ubyte)
        pic = self._picture
        pic.pData[0] = ctypes.cast(base, ptr)
        pic.pData[1] = ctypes.cast(base + w * h, ptr)
        pic.pData[2] = ctypes.cast(base + w * h + (w * h) // 4, ptr)
        pic.uiTimeStamp = timestamp_ms
        info = self._info
        if self._encode(self._encoder, ctypes.byref(pic), ctypes.byref(info)) != 0:
            raise EncodeError("EncodeFrame failed")
        if info.eFrameType in (_FRAME_SKIP, _FRAME_INVALID):
            raise EncodeError(f"frame not coded (frame type {info.eFrameType})")
        nals: list[bytes] = []
        for layer in info.sLayerInfo[: info.iLayerNum]:
            offset = 0
            for n in range(layer.iNalCount):
                size = layer.pNalLengthInByte[n]
                nals.append(
                    _strip_start_code(
                        ctypes.string_at(ctypes.addressof(layer.pBsBuf.contents) + offset, size)
                    )
                )
                offset += size
        return nals

    def close(self) -> None:
        if not self._encoder:
            return
        if self._initialised:
            self._uninit(self._encoder)
            self._initialised = False
        self._lib.WelsDestroySVCEncoder(self._encoder)
        self._encoder = _Encoder()

    def __enter__(self) -> H264Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _strip_start_code(nal: bytes) -> bytes:
    if nal.startswith(b"\x00\x00\x00\x01"):
        return nal[4:]
    if nal.startswith(b"\x00\x00\x01"):
        return nal[3:]
    return nal
