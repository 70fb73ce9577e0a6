"""Material with known rhythm: drum patterns at a given tempo, and videos with scene cuts at irregular times.

Used by the rhythm tests and by `benchmarks/cut_sync.py` (which measures `--sync_cuts` on them).
"""

from pathlib import Path
import typing as tp

import numpy as np

from .scenes import random_scene, write_scenes


def drum_pattern(bpm: float, duration: float, sample_rate: int = 32000, first_beat: float = 0.1,
                 swing_hats: bool = True, seed: int = 0) -> np.ndarray:
    """A rock drum pattern, float32 `[N]`: kick on beats 1 and 3, snare on 2 and 4, a hi-hat on every beat (and
    between beats with `swing_hats`), the first beat at `first_beat` seconds, every beat `60 / bpm` later."""
    rng = np.random.default_rng(seed)
    length = round(duration * sample_rate)
    out = np.zeros(length, dtype=np.float32)
    t = np.arange(round(0.2 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 * t + 100 / 30 * (1 - np.exp(-30 * t)))) * np.exp(-18 * t)
    snare = (0.6 * rng.standard_normal(t.size) + 0.4 * np.sin(2 * np.pi * 190 * t)) * np.exp(-25 * t)
    hat = 0.25 * np.diff(rng.standard_normal(t.size + 1)) * np.exp(-90 * t)

    def add(sound: np.ndarray, time: float, gain: float = 1.0):
        start = round(time * sample_rate)
        end = min(length, start + sound.size)
        if 0 <= start < length:
            out[start:end] += gain * sound[:end - start]

    period = 60.0 / bpm
    for k in range(int((duration - first_beat) / period) + 1):
        time = first_beat + k * period
        add(kick if k % 2 == 0 else snare, time, 0.8)
        add(hat, time)
        if swing_hats:
            add(hat, time + period / 2, 0.6)
    return out


def click_track(beats: tp.Sequence[float], duration: float, sample_rate: int = 32000) -> np.ndarray:
    """Short 1 kHz clicks at the given times (s), float32 `[N]`."""
    out = np.zeros(round(duration * sample_rate), dtype=np.float32)
    t = np.arange(round(0.03 * sample_rate)) / sample_rate
    click = (np.sin(2 * np.pi * 1000 * t) * np.exp(-150 * t)).astype(np.float32)
    for time in beats:
        start = round(time * sample_rate)
        end = min(out.size, start + click.size)
        out[start:end] += click[:end - start]
    return out


def irregular_shots(rng: np.random.Generator, duration: float, fps: int = 25, shortest: float = 1.2,
                    longest: float = 3.5) -> tp.List[float]:
    """Shot lengths (s, whole frames at `fps`) drawn uniformly in [shortest, longest], filling `duration`
    (the last shot takes what is left: from `shortest` to `longest + shortest`)."""
    shots: tp.List[float] = []
    while duration - sum(shots) > longest + shortest:
        shots.append(round(rng.uniform(shortest, longest) * fps) / fps)
    shots.append(round((duration - sum(shots)) * fps) / fps)
    return shots


def write_cut_video(path: tp.Union[str, Path], shots: tp.Sequence[float], seed: int = 0, fps: int = 25,
                    size: tp.Tuple[int, int] = (160, 96)) -> tp.List[float]:
    """Write a video of random scenes lasting `shots` seconds each (whole frames); returns its cut times (s)."""
    rng = np.random.default_rng(seed)
    write_scenes(path, [random_scene(rng, shot) for shot in shots], fps, size)
    frames = np.cumsum([round(shot * fps) for shot in shots])[:-1]
    return [float(f) / fps for f in frames]
