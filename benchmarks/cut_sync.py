"""`--sync_cuts` measured: cut hit rate without and with it, the time it costs, and the artefacts it adds.

A small set of videos with scene cuts at irregular times (shots of 1.2-3.5 s, `synth/rhythm.py`) gets two kinds
of music: drum patterns at tempi from 84 to 150 bpm (beats at a random offset: real rhythmic audio whose beats
librosa finds), and the music of the model in `--model_path` (default: the compact model shipped in `model/`,
whose music is synthetic tones). For each track:

- cuts: PySceneDetect's, checked against the known cuts (recall and precision within one frame);
- hit rate: the fraction of cuts with a beat (librosa's tracker) within 50 / 70 / 100 ms, without and with
  `sync_to_cuts`, all cuts pooled;
- time: what `sync_to_cuts` takes (two beat trackings and the stretches) per track, against the generation time
  (librosa's beat tracker is compiled by numba on its first call in a process, about 20 s here: done before);
- artefacts: the mean absolute log-mel difference (dB) between the output and the original read through the
  time map (so a perfect stretch scores near 0), on frames more than 60 ms away from the warp points and on
  those within 60 ms; for the Rubber Band stretcher used and for librosa's phase vocoder on the same plan.

    python benchmarks/cut_sync.py [--videos 6] [--seconds 12] [--model_path ./model | --no_model] [--json out.json]
"""

import argparse
import json
from pathlib import Path
import tempfile
import time
import typing as tp
import warnings

import librosa
import numpy as np
import torch

from audiocraft_ext.media.beat_sync import DEFAULT_MAX_TEMPO_CHANGE, SYNCED, CutSyncReport, sync_to_cuts, warp
from audiocraft_ext.media.cuts import detect_cuts
from audiocraft_ext.media.rhythm import CutAlignment, align, track_rhythm
from audiocraft_ext.synth.rhythm import drum_pattern, irregular_shots, write_cut_video

warnings.filterwarnings("ignore")

SR = 32000
FPS = 25
HOP = 512
NEAR = 0.06  # seconds around a warp point counted as "near"


def phase_vocoder_stretch(audio: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """librosa's phase vocoder (the alternative stretcher measured against Rubber Band)."""
    return librosa.effects.time_stretch(audio, rate=speed)


def log_mel(wav: np.ndarray) -> np.ndarray:
    """dB log-mel `[64, frames]` of mono audio."""
    mel = librosa.feature.melspectrogram(y=wav, sr=SR, n_fft=2048, hop_length=HOP, n_mels=64)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-8, top_db=None)


def mel_distance(original: np.ndarray, warped: np.ndarray, report: CutSyncReport) -> tp.Tuple[float, float]:
    """Mean |dB| between the warped music's log-mel and the original's read through the time map: on frames
    away from the warp points, and on frames near them."""
    duration = len(original) / SR
    points = np.array([(0.0, 0.0), *map(tuple, report.anchors), (duration, duration)])
    ref, out = log_mel(original), log_mel(warped)
    times = np.arange(out.shape[1]) * HOP / SR
    source = np.interp(times, points[:, 1], points[:, 0]) * SR / HOP  # source frame of each output frame
    low = np.clip(np.floor(source).astype(int), 0, ref.shape[1] - 1)
    high = np.clip(low + 1, 0, ref.shape[1] - 1)
    frac = source - np.floor(source)
    mapped = ref[:, low] * (1 - frac) + ref[:, high] * frac
    diff = np.abs(out - mapped).mean(axis=0)
    near = np.min(np.abs(times[:, None] - points[1:-1, 1][None]), axis=1) <= NEAR
    keep = times < duration - 0.1  # the last frames see the padded end
    return float(diff[keep & ~near].mean()), float(diff[keep & near].mean())


def measure(tracks: tp.Sequence[tp.Tuple[str, np.ndarray, tp.List[float]]], max_tempo_change: float
            ) -> tp.Dict[str, tp.Any]:
    """Hit rates before/after, time, tempo changes and artefacts over `tracks` of (name, music [N], cuts)."""
    before, after = CutAlignment(), CutAlignment()
    seconds, durations, changes, synced = 0.0, 0.0, [], 0
    artefacts: tp.Dict[str, tp.List[tp.Tuple[float, float]]] = {"rubberband": [], "phase_vocoder": []}
    for name, music, cuts in tracks:
        wav = torch.from_numpy(music)[None]
        start = time.perf_counter()
        out, report = sync_to_cuts(wav, SR, cuts, max_tempo_change)
        seconds += time.perf_counter() - start
        durations += len(music) / SR
        assert out.shape == wav.shape
        before = before + align(cuts, track_rhythm(wav, SR))
        after = after + align(cuts, track_rhythm(out, SR))
        if report.status != SYNCED:
            print(f"  {name}: left unchanged ({report.status})")
            continue
        synced += 1
        changes.append(report.largest_tempo_change)
        artefacts["rubberband"].append(mel_distance(music, out[0].numpy(), report))
        anchors = [tuple(a) for a in report.anchors]
        vocoded = warp(wav, SR, anchors, stretch=phase_vocoder_stretch)[0].numpy()
        artefacts["phase_vocoder"].append(mel_distance(music, vocoded, report))
    result = {"tracks": len(tracks), "synced": synced, "cuts": before.cuts,
              "seconds_per_track": seconds / len(tracks), "seconds_per_music_second": seconds / durations,
              "largest_tempo_change": max(changes, default=0.0), "mean_largest_tempo_change":
              float(np.mean(changes)) if changes else 0.0}
    for tolerance in (0.05, 0.07, 0.1):
        ms = round(tolerance * 1000)
        result[f"hit@{ms}ms_without"] = before.hit_rate(tolerance)
        result[f"hit@{ms}ms_with"] = after.hit_rate(tolerance)
    for stretcher, values in artefacts.items():
        if values:
            result[f"mel_dB_away_{stretcher}"] = float(np.mean([v[0] for v in values]))
            result[f"mel_dB_near_{stretcher}"] = float(np.mean([v[1] for v in values]))
    return result


def print_result(title: str, result: tp.Dict[str, tp.Any]) -> None:
    print(f"\n{title}: {result['tracks']} tracks, {result['cuts']} cuts, {result['synced']} synced")
    for tolerance in (50, 70, 100):
        print(f"  cuts with a beat within {tolerance:3d} ms: {result[f'hit@{tolerance}ms_without']:.2f} without, "
              f"{result[f'hit@{tolerance}ms_with']:.2f} with --sync_cuts")
    print(f"  time: {result['seconds_per_track']:.2f} s per track ({result['seconds_per_music_second']:.3f} s per "
          "second of music)" + (f"; generation {result['generation_seconds_per_track']:.1f} s per track"
                                if "generation_seconds_per_track" in result else ""))
    print(f"  largest local tempo change: {100 * result['largest_tempo_change']:.1f} % "
          f"(mean per track {100 * result['mean_largest_tempo_change']:.1f} %)")
    for stretcher in ("rubberband", "phase_vocoder"):
        if f"mel_dB_away_{stretcher}" in result:
            print(f"  log-mel distance to the time-mapped original, {stretcher}: "
                  f"{result[f'mel_dB_away_{stretcher}']:.2f} dB away from warp points, "
                  f"{result[f'mel_dB_near_{stretcher}']:.2f} dB within {1000 * NEAR:.0f} ms of them")


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> tp.Dict[str, tp.Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6, help="videos with irregular cuts")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each video")
    parser.add_argument("--max_tempo_change", type=float, default=DEFAULT_MAX_TEMPO_CHANGE)
    parser.add_argument("--model_path", default="./model", help="model whose music is measured too")
    parser.add_argument("--no_model", action="store_true", help="drum patterns only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    track_rhythm(drum_pattern(120, 2.0, SR), SR)  # librosa's beat tracker compiles (numba) on first use: not timed
    results: tp.Dict[str, tp.Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        videos, known, detected = [], [], []
        for i in range(args.videos):
            path = Path(workdir) / f"cuts_{i}.mp4"
            known.append(write_cut_video(path, irregular_shots(rng, args.seconds, FPS), seed=args.seed + i, fps=FPS))
            start = time.perf_counter()
            detected.append(detect_cuts(path))
            results.setdefault("cut_detection_seconds", []).append(time.perf_counter() - start)
            videos.append(path)
        found = sum(any(abs(d - k) <= 1 / FPS for d in found_cuts) for ks, found_cuts in zip(known, detected)
                    for k in ks)
        right = sum(any(abs(d - k) <= 1 / FPS for k in ks) for ks, found_cuts in zip(known, detected)
                    for d in found_cuts)
        results["cut_detection"] = {"known": sum(map(len, known)), "recall": found / sum(map(len, known)),
                                    "precision": right / max(1, sum(map(len, detected))),
                                    "seconds_per_video": float(np.mean(results.pop("cut_detection_seconds")))}
        print(f"{args.videos} videos of {args.seconds:.0f} s, {results['cut_detection']['known']} cuts at irregular "
              f"times: cut detection recall {results['cut_detection']['recall']:.2f}, precision "
              f"{results['cut_detection']['precision']:.2f}, {results['cut_detection']['seconds_per_video']:.2f} s "
              "per video")
        tempi = np.linspace(84, 150, args.videos)
        drums = [(f"drums_{bpm:.0f}bpm", drum_pattern(bpm, args.seconds, SR, first_beat=float(rng.uniform(0, 60 / bpm)),
                                                      seed=i), cuts)
                 for i, (bpm, cuts) in enumerate(zip(tempi, detected))]
        results["drums"] = measure(drums, args.max_tempo_change)
        print_result("drum patterns, 84-150 bpm", results["drums"])
        if not args.no_model:
            from audiocraft_ext.models.vidmuse import VidMuse
            model = VidMuse.get_pretrained(args.model_path, device="cpu")
            tracks, start = [], time.perf_counter()
            for i, (path, cuts) in enumerate(zip(videos, detected)):
                music = model.generate([model.load_video(path)], seed=args.seed + i)[0]
                tracks.append((path.stem, music[0].numpy(), cuts))
            generation = (time.perf_counter() - start) / len(tracks)
            results["model"] = {**measure(tracks, args.max_tempo_change), "generation_seconds_per_track": generation}
            print_result(f"music of {args.model_path}", results["model"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
