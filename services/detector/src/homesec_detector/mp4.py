"""A minimal MP4 (ISO/IEC 14496-12 and -15) writer for one H.264 video track.

The whole file is built in memory: ``ftyp``, then ``moov`` (before the media: a player can start
before it has every byte, as when Slack streams it), then ``mdat`` with the samples (NAL units
with 4-byte lengths, parameter sets in the ``avcC`` box). Each sample keeps its own duration, so
a clip of frames captured at an uneven rate plays in real time.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

TIMESCALE = 1000
"""Ticks per second of the movie and track clocks (milliseconds)."""

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
_PARAMETER_SETS = (NAL_SPS, NAL_PPS)
_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True)
class Sample:
    """One coded frame: its NAL units (no start codes) and how long it shows, in ticks."""

    nals: Sequence[bytes]
    duration: int


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def write_mp4(samples: Sequence[Sample], width: int, height: int) -> bytes:
    """The MP4 file of ``samples``. Every distinct SPS and PPS of the stream goes into the
    ``avcC`` box (an encoder may send new ones with a later key frame), none stays in-band."""
    if not samples:
        raise ValueError("no samples")
    sps = _distinct(samples, NAL_SPS)
    pps = _distinct(samples, NAL_PPS)
    if not sps or not pps or len(sps[0]) < 4 or len(sps) > 31 or len(pps) > 255:
        raise ValueError("the stream has no usable SPS/PPS")
    payloads: list[bytes] = []
    sync: list[int] = []
    for number, sample in enumerate(samples, start=1):
        coded = [n for n in sample.nals if n and nal_type(n) not in _PARAMETER_SETS]
        if not coded:
            raise ValueError(f"sample {number} has no coded picture")
        if any(nal_type(n) == NAL_IDR for n in coded):
            sync.append(number)
        payloads.append(b"".join(struct.pack(">I", len(n)) + n for n in coded))
    durations = [max(1, s.duration) for s in samples]
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")

    def moov(data_offset: int) -> bytes:
        return _moov(sps, pps, width, height, durations, payloads, sync, data_offset)

    offset = len(ftyp) + len(moov(0)) + 8  # the first sample follows mdat's header
    mdat = _box(b"mdat", *payloads)
    return ftyp + moov(offset) + mdat


def _distinct(samples: Sequence[Sample], kind: int) -> list[bytes]:
    found: list[bytes] = []
    for sample in samples:
        for nal in sample.nals:
            if nal and nal_type(nal) == kind and nal not in found:
                found.append(nal)
    return found


def _moov(
    sps: list[bytes],
    pps: list[bytes],
    width: int,
    height: int,
    durations: list[int],
    payloads: list[bytes],
    sync: list[int],
    data_offset: int,
) -> bytes:
    total = sum(durations)
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, TIMESCALE, total),
        struct.pack(">IH", 0x10000, 0x100),  # rate 1.0, volume 1.0
        bytes(10),
        _UNITY_MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next track id
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        0x3,  # enabled, in movie
        struct.pack(">IIII", 0, 0, 1, 0),  # created, modified, track 1, reserved
        struct.pack(">I", total),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate group, volume, reserved
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mdhd = _full_box(
        b"mdhd",
        0,
        0,
        struct.pack(">IIIIHH", 0, 0, TIMESCALE, total, 0x55C4, 0),  # 'und'
    )
    hdlr = _full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"homesec clip\x00")
    vmhd = _full_box(b"vmhd", 0, 1, bytes(8))
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    first = sps[0]  # profile, compatibility flags and level
    avcc = _box(
        b"avcC",
        bytes([1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps)]),  # 4-byte NAL lengths
        *(struct.pack(">H", len(n)) + n for n in sps),
        bytes([len(pps)]),
        *(struct.pack(">H", len(n)) + n for n in pps),
    )
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data reference index
        bytes(16),
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x480000, 0x480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frames per sample
        bytes(32),  # compressor name
        struct.pack(">Hh", 0x18, -1),  # depth, pre-defined
        avcc,
    )
    stsd = _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1)
    runs: list[tuple[int, int]] = []
    for duration in durations:
        if runs and runs[-1][1] == duration:
            runs[-1] = (runs[-1][0] + 1, duration)
        else:
            runs.append((1, duration))
    stts = _full_box(
        b"stts", 0, 0, struct.pack(">I", len(runs)), *(struct.pack(">II", *r) for r in runs)
    )
    stss = _full_box(b"stss", 0, 0, struct.pack(f">I{len(sync)}I", len(sync), *sync))
    stsc = _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(payloads), 1))  # one chunk
    stsz = _full_box(
        b"stsz",
        0,
        0,
        struct.pack(f">II{len(payloads)}I", 0, len(payloads), *(len(p) for p in payloads)),
    )
    stco = _full_box(b"stco", 0, 0, struct.pack(">II", 1, data_offset))
    stbl = _box(b"stbl", stsd, stts, stss, stsc, stsz, stco)
    minf = _box(b"minf", vmhd, dinf, stbl)
    mdia = _box(b"mdia", mdhd, hdlr, minf)
    return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))
