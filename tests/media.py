"""Test media made on the fly with PyAV: videos whose frames carry their own index as a bar code."""

from fractions import Fraction
from pathlib import Path
import typing as tp

import av
import numpy as np
import torch

INDEX_BITS = 12


def index_frame(index: int, height: int, width: int) -> np.ndarray:
    """RGB uint8 `[H, W, 3]` showing `index` as INDEX_BITS horizontal bars (white = 1), most significant on top."""
    rows = np.arange(height) * INDEX_BITS // height
    bits = (index >> (INDEX_BITS - 1 - rows)) & 1
    column = np.where(bits[:, None], 235, 16).astype(np.uint8)
    return np.repeat(column, width, axis=1)[:, :, None].repeat(3, axis=2)


def read_index(frame: torch.Tensor) -> int:
    """Decode the bar code of a frame `[3, H, W]` uint8 (any size: bars are sampled at their centres)."""
    height = frame.shape[1]
    value = 0
    for bit in range(INDEX_BITS):
        row = int((bit + 0.5) * height / INDEX_BITS)
        value = (value << 1) | int(frame[:, row].float().mean() > 128)
    return value


def write_video(path: tp.Union[str, Path], num_frames: int, fps: tp.Union[float, Fraction] = 25,
                size: tp.Tuple[int, int] = (64, 48), pts_seconds: tp.Optional[tp.Sequence[float]] = None,
                rotation: int = 0, audio_seconds: float = 0.0, codec: str = "libx264", pix_fmt: str = "yuv420p",
                frame_fn: tp.Optional[tp.Callable[[int, int, int], np.ndarray]] = None) -> Path:
    """Write a video of `num_frames` index frames (`size` = width, height).

    `pts_seconds` gives each frame's time (variable frame rate); `rotation` sets the display matrix;
    `audio_seconds` > 0 adds an AAC sine track.
    """
    path = Path(path)
    width, height = size
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    frame_fn = frame_fn or (lambda i, h, w: index_frame(i, h, w))
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        time_base = Fraction(1, 1000) if pts_seconds is not None else 1 / rate
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        audio = None
        if audio_seconds > 0:
            audio = container.add_stream("aac", rate=32000)
            audio.layout = "mono"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, height, width), format="rgb24")
            frame.pts = round(pts_seconds[i] * 1000) if pts_seconds is not None else i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            n = int(audio_seconds * 32000)
            samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 32000)).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = samples[None, start:start + 1024]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                frame.sample_rate = 32000
                frame.pts = start
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path
