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


def comb_share(wav: np.ndarray, sample_rate: int, spacing: float = 50.0, tolerance: float = 3.0,
               band: tp.Tuple[float, float] = (60.0, 1000.0)) -> float:
    """Share of the power of mono audio `[N]` in `band` (Hz) that lies within `tolerance` Hz of a multiple of
    `spacing` (1.95 Hz frequency bins at 32 kHz). Music puts its partials anywhere (about 0.12 here); a codec
    decoder whose output repeats every frame (50 Hz at hop 640, 32 kHz) puts its power on a comb at the frame
    rate, whatever the notes were, and the pitch is lost."""
    power = (np.abs(librosa.stft(wav, n_fft=16384, hop_length=4096)) ** 2).mean(1)
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=16384)
    inside = (freqs > band[0]) & (freqs < band[1])
    near = np.abs(freqs - spacing * np.round(freqs / spacing)) <= tolerance
    total = power[inside].sum()
    return float(power[inside & near].sum() / total) if total > 0 else 0.0


def music_attributes(wav: np.ndarray, sample_rate: int) -> tp.Dict[str, float]:
    return {"pitch": median_pitch(wav, sample_rate), "centroid": spectral_centroid(wav, sample_rate),
            "onset_rate": onset_rate(wav, sample_rate)}


def spearman(x: tp.Sequence[float], y: tp.Sequence[float]) -> float:
    """Spearman rank correlation (0 when either side is constant)."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    return float(spearmanr(x, y).statistic)
