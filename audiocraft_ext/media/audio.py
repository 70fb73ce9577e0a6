"""Audio in and out, in-process with PyAV and soundfile (no ffmpeg program needed)."""

import math
from pathlib import Path
import typing as tp

from audiocraft.data.audio_utils import normalize_audio
import av
import numpy as np
import soundfile
import torch

from ..utils.atomic import atomic_output
from .video import VideoReadError

# The release's inference output: loudness normalisation, 16 dB headroom, tanh compressor.
RELEASE_LOUDNESS = dict(strategy="loudness", loudness_headroom_db=16.0, loudness_compressor=True)


def normalize_music(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Loudness-normalise generated music `[C, N]` as the release's `audio_write` call does.

    The loudness meter needs at least one 400 ms block: shorter audio is measured on a looped copy (the gain and
    the tanh compressor act sample by sample, so the result is the original length, normalised).
    """
    length = wav.shape[-1]
    block = math.ceil(0.4 * sample_rate)
    looped = wav.repeat(1, math.ceil(block / length)) if 0 < length < block else wav
    out = normalize_audio(looped, normalize=True, sample_rate=sample_rate, **RELEASE_LOUDNESS)  # type: ignore[arg-type]
    return out[:, :length]


def write_wav(path: tp.Union[str, Path], wav: torch.Tensor, sample_rate: int) -> Path:
    """Write `[C, N]` float audio as 16-bit PCM wav, atomically."""
    with atomic_output(path) as tmp:
        soundfile.write(str(tmp), wav.clamp(-1, 1).t().cpu().numpy(), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def read_audio_track(path: tp.Union[str, Path], sample_rate: int, channels: int = 1
                     ) -> tp.Tuple[torch.Tensor, float]:
    """Decode the first audio stream of a media file, resampled to `sample_rate` with `channels` channels.

    Returns:
        wav: float32 `[channels, N]`.
        start_time: time (s) of the first sample in the file's clock (compare with the video's first frame).
    Raises `VideoReadError` when the file has no audio stream or it cannot be decoded.
    """
    layout = {1: "mono", 2: "stereo"}[channels]
    try:
        container = av.open(str(path))
    except (av.FFmpegError, ValueError) as err:
        raise VideoReadError(path, f"not a readable media file ({err})") from None
    with container:
        if not container.streams.audio:
            raise VideoReadError(path, "no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        chunks: tp.List[np.ndarray] = []
        start_time: tp.Optional[float] = None
        try:
            for frame in container.decode(stream):
                if start_time is None and frame.pts is not None:
                    start_time = float(frame.pts * stream.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1, channels))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1, channels))
        except av.FFmpegError as err:
            if not chunks:
                raise VideoReadError(path, f"cannot decode the audio stream ({err})") from None
    if not chunks:
        raise VideoReadError(path, "audio stream has no samples")
    wav = torch.from_numpy(np.concatenate(chunks).T.copy())
    return wav, start_time or 0.0


def align_audio(wav: torch.Tensor, offset: float, sample_rate: int, num_samples: int) -> torch.Tensor:
    """Place `wav` `[C, N]` starting `offset` s after time 0, cut or zero-padded to `num_samples`."""
    shift = round(offset * sample_rate)
    if shift > 0:
        wav = torch.nn.functional.pad(wav, (shift, 0))
    elif shift < 0:
        wav = wav[:, -shift:]
    wav = wav[:, :num_samples]
    return torch.nn.functional.pad(wav, (0, num_samples - wav.shape[1]))
