"""Music whose beats land on the picture's cuts: small local time-stretches between beats (Rubber Band).

The music's beats are tracked (librosa); for each cut a few nearby beats are candidates to move onto it. A
longest-path search over the cuts picks the beat for each cut (or leaves it out) so that the most cuts are hit
while every stretch between two consecutive anchors (beat -> cut), and the start and end of the music, which stay
where they are, changes the local tempo by at most `max_tempo_change`; among equally many hits it prefers the
smallest tempo changes. Each stretch between anchors is rendered by Rubber Band (pedalboard's `time_stretch`,
pitch kept) to exactly its number of samples, so the music stays sample-exact as long as it was.
"""

from dataclasses import asdict, dataclass, field
import logging
import math
import typing as tp

import numpy as np
import pedalboard
import torch

from .rhythm import IOU_TOLERANCE, cuts_hit, track_rhythm

logger = logging.getLogger(__name__)

DEFAULT_MAX_TEMPO_CHANGE = 0.15
CANDIDATE_BEATS = 4  # beats considered for each cut: the nearest ones on either side
SYNCED, NO_CUTS, NO_BEATS, NO_REACHABLE_BEAT = "synced", "no_cuts", "no_beats", "no_reachable_beat"


@dataclass
class CutSyncReport:
    """What cut syncing did to one piece of music (recorded in the pipeline's sidecar).

    Attributes:
        status: `synced`, or why the music was left unchanged: `no_cuts` (the video has none), `no_beats` (the
            music has fewer than two beats) or `no_reachable_beat` (no beat can reach a cut within the bound).
        cuts: the video's cut times (s).
        max_tempo_change: the bound asked for (0.15: local tempo within ±15 %).
        largest_tempo_change: the largest local tempo change applied (0 when unchanged).
        anchors: `[beat time in the original music, cut time]` pairs: each beat was moved onto its cut.
        hits_before, hits_after: cuts with a beat (librosa's tracker, rerun on the result) within `tolerance` s.
        tolerance: the tolerance of the hit counts (s).
    """
    status: str
    cuts: tp.List[float] = field(default_factory=list)
    max_tempo_change: float = DEFAULT_MAX_TEMPO_CHANGE
    largest_tempo_change: float = 0.0
    anchors: tp.List[tp.List[float]] = field(default_factory=list)
    hits_before: int = 0
    hits_after: int = 0
    tolerance: float = IOU_TOLERANCE

    def to_dict(self) -> tp.Dict[str, tp.Any]:
        """The report as JSON-ready values."""
        return asdict(self)


def check_max_tempo_change(value: float) -> None:
    """Raise `ValueError` unless `value` is a usable tempo-change bound, in (0, 1)."""
    if not 0 < value < 1:
        raise ValueError(f"max_tempo_change must be in (0, 1), got {value}")


def _speed(a: tp.Tuple[float, float], b: tp.Tuple[float, float]) -> float:
    """Playback speed between two anchors (source time, output time): source seconds per output second."""
    return (b[0] - a[0]) / (b[1] - a[1])


def plan_anchors(beats: tp.Sequence[float], cuts: tp.Sequence[float], duration: float,
                 max_tempo_change: float = DEFAULT_MAX_TEMPO_CHANGE,
                 candidates: int = CANDIDATE_BEATS) -> tp.List[tp.Tuple[float, float]]:
    """Which beat goes onto which cut: a list of anchors `(beat time, cut time)`, increasing in both.

    The time map through `(0, 0)`, the anchors and `(duration, duration)` is piecewise linear; every piece plays
    its source at a speed within `1 ± max_tempo_change`. The plan hits the most cuts, then has the smallest sum
    over pieces of `output length × log(speed)²`.
    """
    beats = np.sort(np.asarray(beats, dtype=np.float64))
    nodes: tp.List[tp.Tuple[float, float]] = [(0.0, 0.0)]
    for cut in sorted(cuts):
        if not 0 < cut < duration:
            continue
        nearest = np.argsort(np.abs(beats - cut))[:candidates]
        nodes += sorted((float(beats[k]), float(cut)) for k in nearest if 0 < beats[k] < duration)
    nodes.append((duration, duration))
    lo, hi = 1 - max_tempo_change, 1 + max_tempo_change
    # best[i] = (hits, -cost) of the best path from the start to node i; nodes are in output-time order.
    best: tp.List[tp.Tuple[int, float]] = [(0, 0.0)] + [(-1, -math.inf)] * (len(nodes) - 1)
    previous = [-1] * len(nodes)
    for i in range(1, len(nodes)):
        for j in range(i):
            a, b = nodes[j], nodes[i]
            if best[j][0] < 0 or b[0] <= a[0] or b[1] <= a[1]:
                continue
            speed = _speed(a, b)
            if not lo <= speed <= hi:
                continue
            score = (best[j][0] + (i < len(nodes) - 1), best[j][1] - (b[1] - a[1]) * math.log(speed) ** 2)
            if score > best[i]:
                best[i], previous[i] = score, j
    anchors, i = [], previous[-1]
    while i > 0:
        anchors.append(nodes[i])
        i = previous[i]
    return anchors[::-1]


Stretcher = tp.Callable[[np.ndarray, int, float], np.ndarray]


def rubberband_stretch(audio: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """Audio `[C, n]` played `speed` times as fast, pitch kept (Rubber Band, pedalboard): about `n / speed`
    samples."""
    return pedalboard.time_stretch(audio, sample_rate, stretch_factor=speed)


def warp(wav: torch.Tensor, sample_rate: int, anchors: tp.Sequence[tp.Tuple[float, float]],
         stretch: Stretcher = rubberband_stretch) -> torch.Tensor:
    """Time-warp audio `[C, N]` so that each anchor's source time plays at its output time (each piece between
    anchors stretched by `stretch`, Rubber Band by default, and cut or padded to its exact length); the result
    has exactly N samples."""
    length = wav.shape[-1]
    duration = length / sample_rate
    points = [(0.0, 0.0), *anchors, (duration, duration)]
    audio = wav.detach().cpu().float().numpy()
    pieces = []
    for (src_a, out_a), (src_b, out_b) in zip(points[:-1], points[1:]):
        s0, s1 = round(src_a * sample_rate), round(src_b * sample_rate)
        o0, o1 = round(out_a * sample_rate), round(out_b * sample_rate)
        piece = np.ascontiguousarray(audio[:, s0:s1])
        if s1 - s0 != o1 - o0:
            piece = stretch(piece, sample_rate, (s1 - s0) / (o1 - o0))
        piece = piece[:, :o1 - o0]
        pad = ((0, 0), (0, o1 - o0 - piece.shape[1]))  # Rubber Band's length is right to a few samples
        pieces.append(np.pad(piece, pad, mode="edge" if piece.shape[1] else "constant"))
    return torch.from_numpy(np.concatenate(pieces, axis=1)).to(wav.dtype)


def sync_to_cuts(wav: torch.Tensor, sample_rate: int, cuts: tp.Sequence[float],
                 max_tempo_change: float = DEFAULT_MAX_TEMPO_CHANGE) -> tp.Tuple[torch.Tensor, CutSyncReport]:
    """Move the beats of music `[C, N]` onto `cuts` (s) by local time-stretches of at most `max_tempo_change`.

    Returns the music (same shape; unchanged when there is no cut, no beat or no beat within reach) and the
    report of what was done.
    """
    check_max_tempo_change(max_tempo_change)
    cuts = [float(c) for c in cuts]
    report = CutSyncReport(NO_CUTS, cuts, max_tempo_change)
    if not cuts:
        return wav, report
    beats = track_rhythm(wav, sample_rate).beats
    report.hits_before = report.hits_after = cuts_hit(cuts, beats, report.tolerance)
    if len(beats) < 2:
        report.status = NO_BEATS
        return wav, report
    anchors = plan_anchors(beats, cuts, wav.shape[-1] / sample_rate, max_tempo_change)
    if not anchors:
        report.status = NO_REACHABLE_BEAT
        return wav, report
    points = [(0.0, 0.0), *anchors, (wav.shape[-1] / sample_rate,) * 2]
    report.status = SYNCED
    report.anchors = [[round(a, 4), round(b, 4)] for a, b in anchors]
    report.largest_tempo_change = round(max(abs(_speed(a, b) - 1) for a, b in zip(points[:-1], points[1:])), 4)
    synced = warp(wav, sample_rate, anchors)
    report.hits_after = cuts_hit(cuts, track_rhythm(synced, sample_rate).beats, report.tolerance)
    logger.info("cut sync: %d/%d cuts on a beat (was %d), largest tempo change %.1f %%", report.hits_after,
                len(cuts), report.hits_before, 100 * report.largest_tempo_change)
    return synced, report
