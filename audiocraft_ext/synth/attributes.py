"""Measured attributes of music (pitch register, onset rate) and rank correlation, for the synthetic corpus."""

import typing as tp

import librosa
import numpy as np
from scipy.stats import spearmanr


def median_pitch(wav: np.ndarray, sample_rate: int) -> float:
    """Median fundamental (MIDI note number) over the louder frames of mono audio `[N]` (YIN, 55-2000 Hz)."""
    frame = 2048
    f0 = librosa.yin(wav, fmin=55.0, fmax=2000.0, sr=sample_rate, frame_length=frame)
    rms = librosa.feature.rms(y=wav, frame_length=frame, hop_length=frame // 4)[0][:len(f0)]
    loud = rms >= 0.25 * rms.max() if rms.max() > 0 else np.ones_like(rms, dtype=bool)
    return float(librosa.hz_to_midi(np.median(f0[:len(rms)][loud])))


def spectral_centroid(wav: np.ndarray, sample_rate: int) -> float:
    """Median spectral centroid (Hz)."""
    return float(np.median(librosa.feature.spectral_centroid(y=wav, sr=sample_rate)[0]))


def onset_rate(wav: np.ndarray, sample_rate: int) -> float:
    """Detected note onsets per second (peaks at least 5 frames, 80 ms at 32 kHz, apart: harmonics and
    chord changes would otherwise add double detections)."""
    onsets = librosa.onset.onset_detect(y=wav, sr=sample_rate, units="time", wait=5)
    return float(len(onsets) / (len(wav) / sample_rate))


def music_attributes(wav: np.ndarray, sample_rate: int) -> tp.Dict[str, float]:
    return {"pitch": median_pitch(wav, sample_rate), "centroid": spectral_centroid(wav, sample_rate),
            "onset_rate": onset_rate(wav, sample_rate)}


def spearman(x: tp.Sequence[float], y: tp.Sequence[float]) -> float:
    """Spearman rank correlation (0 when either side is constant)."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    return float(spearmanr(x, y).statistic)
