"""Rhythm of music against the cuts of its picture: beats and onsets (librosa), and how well they align.

A cut is "hit" when a music beat lies within a tolerance of it (50, 70 and 100 ms are reported). The beat IoU
matches cuts and beats one to one within the tolerance (nearest first) and divides the matched pairs by the size
of the union of both sets (cuts + beats − matched), as the intersection-over-union of two sets of events.
"""

from dataclasses import dataclass, field
import typing as tp

import librosa
import numpy as np
import torch

TOLERANCES = (0.05, 0.07, 0.1)  # seconds
IOU_TOLERANCE = 0.07


@dataclass
class Rhythm:
    """Beats and onsets of a piece of music.

    Attributes:
        beats: beat times (s), librosa's dynamic-programming beat tracker.
        onsets: onset times (s), librosa's onset detector.
        tempo: the beat tracker's global tempo estimate (beats per minute; 0 when no beat was found).
    """
    beats: np.ndarray
    onsets: np.ndarray
    tempo: float


def _mono(wav: tp.Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    array = wav.detach().cpu().float().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, np.float32)
    return array.mean(axis=0) if array.ndim == 2 else array


def track_rhythm(wav: tp.Union[torch.Tensor, np.ndarray], sample_rate: int) -> Rhythm:
    """Beats, onsets and tempo of audio `[C, N]` or `[N]` (channels are averaged)."""
    y = _mono(wav)
    envelope = librosa.onset.onset_strength(y=y, sr=sample_rate)
    tempo, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sample_rate, units="time")
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, units="time")
    return Rhythm(np.asarray(beats, dtype=np.float64), np.asarray(onsets, dtype=np.float64),
                  float(np.atleast_1d(tempo)[0]) if len(beats) else 0.0)


def cuts_hit(cuts: tp.Sequence[float], events: tp.Sequence[float], tolerance: float) -> int:
    """How many `cuts` have an event (beat or onset) within `tolerance` seconds."""
    events = np.sort(np.asarray(events, dtype=np.float64))
    if len(events) == 0:
        return 0
    cuts = np.asarray(cuts, dtype=np.float64)
    right = np.clip(np.searchsorted(events, cuts), 0, len(events) - 1)
    left = np.clip(right - 1, 0, len(events) - 1)
    nearest = np.minimum(np.abs(events[right] - cuts), np.abs(events[left] - cuts))
    return int((nearest <= tolerance + 1e-9).sum())


def matched_pairs(cuts: tp.Sequence[float], beats: tp.Sequence[float], tolerance: float) -> int:
    """Cuts and beats matched one to one within `tolerance`, the closest pairs first."""
    pairs = sorted((abs(b - c), i, j) for i, c in enumerate(cuts) for j, b in enumerate(beats)
                   if abs(b - c) <= tolerance + 1e-9)
    used_cuts, used_beats = set(), set()
    for _, i, j in pairs:
        if i not in used_cuts and j not in used_beats:
            used_cuts.add(i)
            used_beats.add(j)
    return len(used_cuts)


@dataclass
class CutAlignment:
    """Counts of how one piece of music (or several, added up) lines up with its video's cuts.

    Attributes:
        cuts: number of cuts.
        beats: number of beats.
        beat_hits: tolerance (s) -> cuts with a beat within it.
        onset_hits: tolerance (s) -> cuts with an onset within it.
        matched: cut-beat pairs matched one to one within `IOU_TOLERANCE`.
    """
    cuts: int = 0
    beats: int = 0
    beat_hits: tp.Dict[float, int] = field(default_factory=lambda: {t: 0 for t in TOLERANCES})
    onset_hits: tp.Dict[float, int] = field(default_factory=lambda: {t: 0 for t in TOLERANCES})
    matched: int = 0

    def __add__(self, other: "CutAlignment") -> "CutAlignment":
        return CutAlignment(self.cuts + other.cuts, self.beats + other.beats,
                            {t: self.beat_hits[t] + other.beat_hits[t] for t in TOLERANCES},
                            {t: self.onset_hits[t] + other.onset_hits[t] for t in TOLERANCES},
                            self.matched + other.matched)

    def hit_rate(self, tolerance: float = 0.07) -> float:
        """Fraction of cuts with a beat within `tolerance` (one of `TOLERANCES`; NaN without cuts)."""
        return self.beat_hits[tolerance] / self.cuts if self.cuts else float("nan")

    def summary(self) -> tp.Dict[str, float]:
        """The figures as a flat dict: beat and onset hit rates per tolerance, beat IoU, counts."""
        result: tp.Dict[str, float] = {}
        for t in TOLERANCES:
            result[f"cut_beat_hit@{round(t * 1000)}ms"] = self.hit_rate(t)
        for t in TOLERANCES:
            result[f"cut_onset_hit@{round(t * 1000)}ms"] = (self.onset_hits[t] / self.cuts if self.cuts
                                                             else float("nan"))
        union = self.cuts + self.beats - self.matched
        result[f"beat_iou@{round(IOU_TOLERANCE * 1000)}ms"] = self.matched / union if union else float("nan")
        result["cuts"] = self.cuts
        result["beats"] = self.beats
        return result


def align(cuts: tp.Sequence[float], rhythm: Rhythm) -> CutAlignment:
    """How `rhythm` lines up with `cuts` (s)."""
    cuts = list(cuts)
    return CutAlignment(len(cuts), len(rhythm.beats),
                        {t: cuts_hit(cuts, rhythm.beats, t) for t in TOLERANCES},
                        {t: cuts_hit(cuts, rhythm.onsets, t) for t in TOLERANCES},
                        matched_pairs(cuts, list(rhythm.beats), IOU_TOLERANCE))
