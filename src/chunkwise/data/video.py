"""Camera streams stored as MP4 video (LeRobot v3.0's default): decode by timestamp, encode.

Layout (as LeRobot 0.6.1 writes it): one MP4 per camera per ``(chunk, file)``,
``videos/<key>/chunk-000/file-000.mp4``, holding the episodes back to back. Episode e's
frames sit at ``[from_timestamp, to_timestamp)`` of its file (columns
``videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}`` of ``meta/episodes``),
so frame t of episode e is the video frame presented at ``from_timestamp[e] + timestamp[t]``.

Decoding uses PyAV (its wheels bundle FFmpeg with libdav1d for AV1 and the H.264 decoder).
``DecoderCache`` keeps a few files open (LRU) so a training loop never reopens a file per
sample. A request for frames of one file is served in time order: a frame at most
``forward_frames`` after the last one decoded is reached by decoding forward; anything else
seeks to the keyframe at or before it (LeRobot encodes a keyframe every g = 2 frames) and
decodes forward from there. The dataset sets ``forward_frames = g + 2`` from info.json: a
seek costs about two decoded frames (128x128 AV1: 0.23 ms per frame decoded, 0.75 ms per
seek + decode). RGB conversion reuses one swscale context per file (PyAV's
``to_ndarray(format="rgb24")`` builds a new one per frame: 2-5 ms instead of 0.08 ms).
A decoded frame must lie within ``tolerance_s`` of the request (LeRobot's 1e-4 s), else
``VideoFrameError``. Frames come out as uint8 (H, W, 3) RGB, upright, like the PNG path.

Encoding (``VideoEncoder``, used by the writer) keeps one encoder open per camera file and
feeds every episode's frames in order with pts = frame number in the file, so episode e
starts at ``frames_before / fps`` — the same timestamps LeRobot's per-episode encode +
concatenate produces. Default codec settings are LeRobot's (``libsvtav1``, yuv420p, GOP 2,
CRF 30, preset 12, fast-decode 0); ``h264`` (libx264) is the alternative.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from chunkwise.data.format import VIDEO_PATH

__all__ = ["VIDEO_PATH", "DecoderCache", "VideoDecoder", "VideoEncoder", "VideoEncoderOptions",
           "VideoFrameError", "probe_video_info", "require_av"]

DEFAULT_TOLERANCE_S = 1e-4  # LeRobot's tolerance_s
CODEC_ALIASES = {"av1": "libsvtav1", "libx264": "h264"}
SUPPORTED_ENCODERS = ("libsvtav1", "h264")


class VideoFrameError(RuntimeError):
    """A requested frame is missing from the video or too far from the requested time."""


def require_av() -> Any:
    """Import PyAV or raise an ImportError that says how to get it."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency of chunkwise
        raise ImportError(
            "reading or writing video-encoded cameras needs PyAV: pip install av "
            "(a chunkwise dependency; its wheels bundle FFmpeg with the AV1 decoder)") from exc
    return av


# ---------------------------------------------------------------------------- decoding
class VideoDecoder:
    """One open video file; ``frames_at(timestamps)`` -> uint8 (k, H, W, 3)."""

    def __init__(self, path: str | Path, tolerance_s: float = DEFAULT_TOLERANCE_S, forward_frames: int = 4,
                 threads: int = 1) -> None:
        av = require_av()
        from av.video.reformatter import VideoReformatter

        self.path = str(path)
        self.tolerance_s = float(tolerance_s)
        self.forward_frames = int(forward_frames)
        try:
            self._container = av.open(self.path)
        except (OSError, av.error.FFmpegError) as exc:
            raise VideoFrameError(f"cannot open video {self.path}: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoFrameError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = int(threads)  # tiny frames: threads add latency
        self._time_base = self._stream.time_base
        rate = self._stream.average_rate or self._stream.base_rate
        self._frame_ticks = (1 / (rate * self._time_base)) if rate else None  # pts per frame
        self._rgb = VideoReformatter()  # one cached swscale context for the file
        self._frames: Iterator[Any] | None = None
        self._last_pts: int | None = None  # pts of the last frame taken from _frames
        self._last_rgb: tuple[int, np.ndarray] | None = None
        self.seeks = 0
        self.decoded = 0

    @property
    def width(self) -> int:
        return int(self._stream.codec_context.width)

    @property
    def height(self) -> int:
        return int(self._stream.codec_context.height)

    def _pts(self, t: float) -> int:
        return int(round(t / self._time_base))

    def _seek(self, pts: int) -> None:
        # Land on the keyframe at or before pts. (LeRobot seeks to pts - 1, which on a
        # keyframe lands a whole GOP early; a frame within the tolerance before pts has the
        # same keyframe at or before it, since frames are many ticks apart.)
        self._container.seek(max(pts, 0), stream=self._stream, backward=True, any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._last_pts = None
        self.seeks += 1

    def _next_frame(self) -> Any | None:
        assert self._frames is not None
        for frame in self._frames:
            if frame.pts is None:
                continue
            self._last_pts = int(frame.pts)
            self.decoded += 1
            return frame
        self._frames = None
        return None

    def _frame_at(self, t: float) -> np.ndarray:
        pts = self._pts(t)
        tol = self.tolerance_s / float(self._time_base)
        if self._last_rgb is not None and abs(self._last_rgb[0] - pts) <= tol:
            return self._last_rgb[1]
        near = (self._frames is not None and self._last_pts is not None and self._frame_ticks is not None
                and self._last_pts < pts <= self._last_pts + self.forward_frames * self._frame_ticks)
        if not near:
            self._seek(pts)
        first = True
        while True:
            frame = self._next_frame()
            if frame is None:
                raise VideoFrameError(f"{self.path}: no frame at t={t:.6f}s (the video ends before it)")
            if first and not near and frame.pts > pts + tol and pts > 0:
                # the demuxer landed past the target (a file without a usable index): from the start
                self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
                self._frames = self._container.decode(self._stream)
                self.seeks += 1
                first = False
                continue
            first = False
            if frame.pts >= pts - tol:
                break
        got = float(frame.pts * self._time_base)
        if abs(got - t) > self.tolerance_s:
            raise VideoFrameError(
                f"{self.path}: the frame closest to t={t:.6f}s is at {got:.6f}s, more than the "
                f"tolerance {self.tolerance_s}s away (is the dataset's fps or from_timestamp wrong?)")
        rgb = self._rgb.reformat(frame, format="rgb24").to_ndarray()
        self._last_rgb = (int(frame.pts), rgb)
        return rgb

    def frames_at(self, timestamps: Sequence[float] | np.ndarray) -> np.ndarray:
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        out = np.empty((len(ts), self.height, self.width, 3), dtype=np.uint8)
        for j in np.argsort(ts, kind="stable"):
            out[j] = self._frame_at(float(ts[j]))
        return out

    def close(self) -> None:
        self._frames = None
        self._container.close()


class DecoderCache:
    """At most ``max_open`` open ``VideoDecoder``s, least recently used closed first.

    Reopened after a fork (a decoder's file position must not be shared between processes)."""

    def __init__(self, max_open: int = 8, tolerance_s: float = DEFAULT_TOLERANCE_S, threads: int = 1) -> None:
        if max_open <= 0:
            raise ValueError(f"max_open must be positive, got {max_open}")
        self.max_open = int(max_open)
        self.tolerance_s = float(tolerance_s)
        self.threads = int(threads)
        self._open: OrderedDict[str, VideoDecoder] = OrderedDict()
        self._pid = os.getpid()
        self.opened = 0

    def get(self, path: str | Path, forward_frames: int = 4) -> VideoDecoder:
        if os.getpid() != self._pid:  # forked: drop the parent's handles without closing them
            self._open = OrderedDict()
            self._pid = os.getpid()
        key = str(path)
        dec = self._open.get(key)
        if dec is not None:
            self._open.move_to_end(key)
            return dec
        dec = VideoDecoder(key, tolerance_s=self.tolerance_s, forward_frames=forward_frames, threads=self.threads)
        self.opened += 1
        self._open[key] = dec
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return dec

    def frames(self, paths: Sequence[str], timestamps: np.ndarray, shape: Sequence[int],
               forward_frames: int = 4) -> np.ndarray:
        """Frames for (path, timestamp) pairs, grouped by file: uint8 (k, *shape)."""
        ts = np.asarray(timestamps, dtype=np.float64)
        out = np.empty((len(ts), *shape), dtype=np.uint8)
        groups: dict[str, list[int]] = {}
        for j, p in enumerate(paths):
            groups.setdefault(p, []).append(j)
        for p, rows in groups.items():
            got = self.get(p, forward_frames).frames_at(ts[rows])
            if got.shape[1:] != tuple(shape):
                raise VideoFrameError(f"{p}: frames are {got.shape[1:]}, the dataset says {tuple(shape)}")
            out[rows] = got
        return out

    def close(self) -> None:
        if os.getpid() == self._pid:
            for dec in self._open.values():
                dec.close()
        self._open.clear()

    def __len__(self) -> int:
        return len(self._open)


def probe_video_info(path: str | Path) -> dict[str, Any]:
    """The stream-derived ``video.*`` entries LeRobot's ``get_video_info`` records."""
    av = require_av()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {
            "video.height": int(s.height),
            "video.width": int(s.width),
            "video.codec": s.codec.canonical_name,
            "video.pix_fmt": s.pix_fmt,
            "video.fps": int(s.base_rate),
            "video.channels": 3,
        }
        info["has_audio"] = bool(c.streams.audio)
    return info


# ---------------------------------------------------------------------------- encoding
@dataclass
class VideoEncoderOptions:
    """Encoder settings, LeRobot's ``VideoEncoderConfig`` defaults (``libsvtav1`` = AV1)."""

    vcodec: str = "libsvtav1"  # libsvtav1 (AV1, LeRobot's default) or h264 (libx264)
    pix_fmt: str = "yuv420p"
    g: int | None = 2  # keyframe every g frames (cheap random access)
    crf: int | None = 30
    preset: int | str | None = None  # libsvtav1: 12 when None (as LeRobot)
    fast_decode: int = 0
    extra_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vcodec = CODEC_ALIASES.get(self.vcodec, self.vcodec)
        if self.vcodec not in SUPPORTED_ENCODERS:
            raise ValueError(f"unsupported video codec {self.vcodec!r}; use one of {SUPPORTED_ENCODERS} "
                             "(av1 is an alias of libsvtav1)")
        if self.preset is None and self.vcodec == "libsvtav1":
            self.preset = 12

    def check_available(self) -> None:
        av = require_av()
        name = "libx264" if self.vcodec == "h264" else self.vcodec
        if name not in av.codecs_available:
            raise ValueError(f"video codec {self.vcodec!r} is not available in this PyAV/FFmpeg build "
                             f"(PyAV {av.__version__}); try the other of {SUPPORTED_ENCODERS}")

    def codec_options(self) -> dict[str, str]:
        """LeRobot's ``VideoEncoderConfig.get_codec_options(as_strings=True)``."""
        opts: dict[str, str] = {}
        if self.g is not None:
            opts["g"] = str(self.g)
        if self.crf is not None:
            opts["crf"] = str(self.crf)
        if self.preset is not None:
            opts["preset"] = str(self.preset)
        if self.vcodec == "libsvtav1":
            opts["svtav1-params"] = f"fast-decode={max(0, min(2, self.fast_decode))}"
        elif self.fast_decode:
            opts["tune"] = "fastdecode"
        for k, v in self.extra_options.items():
            opts.setdefault(k, str(v))
        return opts

    def info_entries(self) -> dict[str, Any]:
        """The encoder ``video.*`` entries LeRobot adds after the stream-derived ones."""
        return {"video.g": self.g, "video.crf": self.crf, "video.preset": self.preset,
                "video.fast_decode": self.fast_decode, "video.video_backend": "pyav",
                "video.extra_options": dict(self.extra_options)}


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001) if not float(fps).is_integer() else Fraction(int(fps))


class VideoEncoder:
    """One camera's MP4 file, fed frame by frame across episodes."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int,
                 options: VideoEncoderOptions | None = None) -> None:
        av = require_av()
        self.options = options or VideoEncoderOptions()
        if width % 2 or height % 2:
            raise ValueError(f"video needs an even width and height for {self.options.pix_fmt}, got "
                             f"{width}x{height}; use another image size or store images as PNG")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config at level 3 (info)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = int(width), int(height)
        self._rate = _fps_fraction(fps)
        self._container = av.open(str(self.path), "w")
        self._stream = self._container.add_stream(self.options.vcodec, rate=self._rate,
                                                  options=self.options.codec_options())
        self._stream.pix_fmt = self.options.pix_fmt
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.codec_context.time_base = 1 / self._rate
        self.frames = 0
        self.bytes = 0
        self.packets = 0
        self._closed = False

    @property
    def size_estimate(self) -> float:
        """Bytes of the file once flushed: the encoder holds back up to ~40 frames, which
        are counted at the mean size of the frames already out."""
        return self.bytes / self.packets * self.frames if self.packets else 0.0

    def _mux(self, packets: Any) -> None:
        for p in packets:
            if p.size:
                self.bytes += p.size
                self.packets += 1
            self._container.mux(p)

    def add(self, frames: np.ndarray) -> None:
        av = require_av()
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img, dtype=np.uint8), format="rgb24")
            frame.pts = self.frames
            frame.time_base = 1 / self._rate
            self._mux(self._stream.encode(frame))
            self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._mux(self._stream.encode(None))
        finally:
            self._container.close()

    def abort(self) -> None:
        """Close without flushing (an error elsewhere)."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort on an error path
                pass
