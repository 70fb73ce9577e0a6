"""A procedural audio-visual corpus whose music follows its video by explicit rules.

Each clip is a few scenes of shapes orbiting over a striped gradient background that pans (a camera moving
over a textured wall); its music is synthesised from the same parameters:
- **brightness -> pitch register**: the scene's brightness gain sets the octave and the notes' register
  (brighter picture, higher notes);
- **speed -> tempo**: one speed drives the shapes' orbits (turns per second) and the camera pan (frames per
  second, in a random direction), and sets the number of note onsets per second (faster motion, more onsets).
  The pan moves every patch of the picture, not only the few a shape crosses;
- **background hue -> chord**: every scene plays its own chord of a progression, named by the hue of its
  background (five hue sectors, one per chord), so a scene cut is a chord change the picture announces;
Motion stays slow enough for 2 fps local frames to resolve it (under a quarter turn, and under half a stripe
period of pan, between two frames 0.5 s apart), and fast enough at the top of its range for a shape to cross
a 32-pixel CLIP patch between them.
Shapes, sizes, shape colours, orbits, directions, the background's saturation and value, and the hue within its
sector vary at random, so that a model has to learn the rules rather than the pictures.

    python -m audiocraft_ext.synth.corpus --out egs/synth/train --count 2000 --seed 0
    python -m audiocraft_ext.synth.corpus --out egs/synth/test --count 24 --seed 100000
"""

import argparse
import colorsys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
import json
from pathlib import Path
import typing as tp

import numpy as np
import torch
from tqdm import tqdm

from ..data.video_dataset import VideoAudioMeta, save_video_audio_meta
from ..media.audio import write_wav
from .scenes import SHAPES, Scene, Shape, write_scenes

SAMPLE_RATE = 32000
BRIGHTNESS_RANGE = (0.35, 1.15)
SPEED_RANGE = (0.04, 0.44)       # orbit turns (and pan frames) per second: <= 0.22 between 2 fps frames
ONSETS_RANGE = (1.0, 5.0)        # note onsets per second
BASE_NOTE_RANGE = (45, 72)       # MIDI note of the lowest chord tone: A2 (dark) .. C5 (bright)
STRIPE_PERIOD = 0.5             # frame units: the pan (<= 0.22 frame between 2 fps frames) stays under half of it
STRIPES_RANGE = (0.15, 0.3)      # relative amplitude of the background's stripes
PROGRESSION = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (2, 5, 9)]  # I, IV, V, vi, ii (semitones)
HUE_JITTER = 0.04                # chord k's hue sector is centred on k / 5: red, yellow-green, green, azure, violet
SATURATION_RANGE = (0.45, 0.85)
VALUE_RANGE = (0.45, 0.85)       # before the brightness gain


@dataclass
class ClipSpec:
    """The knobs of one clip; the video and the music are both rendered from them."""
    seed: int
    duration: float
    brightness: float
    speed: float
    cuts: tp.List[float] = field(default_factory=list)   # scene change times (s)
    chords: tp.List[int] = field(default_factory=list)   # index in PROGRESSION for each scene

    @property
    def onsets_per_second(self) -> float:
        return _lerp(ONSETS_RANGE, _unit(self.speed, SPEED_RANGE))

    @property
    def base_note(self) -> float:
        return _lerp(BASE_NOTE_RANGE, _unit(self.brightness, BRIGHTNESS_RANGE))


def spec_from_row(row: tp.Dict[str, tp.Any]) -> "ClipSpec":
    """The `ClipSpec` of a row of `attributes.jsonl` (which holds its fields and measured extras)."""
    return ClipSpec(**{f.name: row[f.name] for f in fields(ClipSpec)})


def chord_variants(spec: ClipSpec) -> tp.List[ClipSpec]:
    """`spec` itself, then the same clip with every scene's chord moved k steps along `PROGRESSION`
    (k = 1 .. 4): same register, tempo and cuts, other harmony in every scene."""
    return [replace(spec, chords=[(chord + k) % len(PROGRESSION) for chord in spec.chords])
            for k in range(len(PROGRESSION))]


def _unit(value: float, bounds: tp.Tuple[float, float]) -> float:
    return (value - bounds[0]) / (bounds[1] - bounds[0])


def _lerp(bounds: tp.Tuple[float, float], t: float) -> float:
    return bounds[0] + t * (bounds[1] - bounds[0])


def sample_spec(seed: int, duration: float = 10.0) -> ClipSpec:
    """Random knobs for clip `seed`: brightness and speed uniform in their ranges, one or two cuts."""
    rng = np.random.default_rng(seed)
    num_cuts = int(rng.integers(1, 3))
    cuts = sorted(float(c) for c in rng.uniform(duration * 0.25, duration * 0.8, size=num_cuts))
    chords = [int(c) for c in rng.permutation(len(PROGRESSION))[:num_cuts + 1]]
    return ClipSpec(seed, duration, float(rng.uniform(*BRIGHTNESS_RANGE)), float(rng.uniform(*SPEED_RANGE)),
                    cuts, chords)


def chord_color(chord: int, rng: np.random.Generator) -> tp.Tuple[int, int, int]:
    """An RGB background colour whose hue lies in the sector of `chord` (index in `PROGRESSION`), with random
    saturation and value."""
    hue = (chord / len(PROGRESSION) + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*SATURATION_RANGE), rng.uniform(*VALUE_RANGE))
    return tuple(int(round(255 * c)) for c in rgb)


def scenes_for(spec: ClipSpec) -> tp.List[Scene]:
    """The video: one `Scene` per segment between cuts, its background in the hue of the scene's chord; shapes
    orbit, and the camera pans, at the clip's speed."""
    rng = np.random.default_rng(spec.seed + 1)
    bounds = [0.0, *spec.cuts, spec.duration]
    scenes = []
    for scene, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        chord = spec.chords[scene % len(spec.chords)]
        shapes = [Shape(kind=str(rng.choice(SHAPES)), color=tuple(int(c) for c in rng.integers(90, 256, 3)),
                        size=float(rng.uniform(0.15, 0.3)),
                        center=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
                        orbit=float(rng.uniform(0.15, 0.3)), speed=spec.speed * float(rng.choice([-1, 1])),
                        phase=float(rng.uniform(0, 1))) for _ in range(int(rng.integers(1, 4)))]
        direction = float(rng.uniform(0, 2 * np.pi))
        pan = (spec.speed * float(np.cos(direction)), spec.speed * float(np.sin(direction)))
        scenes.append(Scene(end - start, chord_color(chord, rng), chord_color(chord, rng), spec.brightness, shapes,
                            stripes=float(rng.uniform(*STRIPES_RANGE)), stripe_period=STRIPE_PERIOD, pan=pan))
    return scenes


def synthesize(spec: ClipSpec, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The music: arpeggiated chords (one per scene) at the clip's tempo, in its register, plus a soft pad.

    Returns float32 `[N]` mono audio of `spec.duration` seconds.
    """
    rng = np.random.default_rng(spec.seed + 2)
    n = int(round(spec.duration * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    bounds = [0.0, *spec.cuts, spec.duration]
    step = 1.0 / spec.onsets_per_second
    t = np.arange(n) / sample_rate
    for scene, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        chord = PROGRESSION[spec.chords[scene % len(spec.chords)]]
        notes = [spec.base_note + c for c in chord] + [spec.base_note + chord[0] + 12]
        onset = start
        while onset < end - 0.05:
            note = notes[int(rng.integers(0, len(notes)))]
            length = min(step * 0.9, end - onset)
            _add_note(out, sample_rate, onset, length, 440.0 * 2 ** ((note - 69) / 12), 0.25)
            onset += step
        span = (t >= start) & (t < end)
        pad_freq = 440.0 * 2 ** ((spec.base_note + chord[0] - 12 - 69) / 12)
        out[span] += 0.05 * np.sin(2 * np.pi * pad_freq * t[span])
    peak = np.abs(out).max()
    return (out / peak * 0.8 if peak > 0 else out).astype(np.float32)


def _add_note(out: np.ndarray, sample_rate: int, start: float, length: float, freq: float, gain: float):
    first = int(start * sample_rate)
    count = min(int(length * sample_rate), len(out) - first)
    if count <= 0:
        return
    t = np.arange(count) / sample_rate
    envelope = np.minimum(t / 0.005, 1.0) * np.exp(-t * 6.0)  # 5 ms attack, plucked decay
    tone = np.sin(2 * np.pi * freq * t) + 0.4 * np.sin(4 * np.pi * freq * t) + 0.15 * np.sin(6 * np.pi * freq * t)
    out[first:first + count] += gain * envelope * tone


def write_clip(spec: ClipSpec, folder: Path, fps: int = 10, size: tp.Tuple[int, int] = (128, 128)
               ) -> VideoAudioMeta:
    """Write `clip_<seed>.mp4` (no audio) and `clip_<seed>.wav`; return the manifest entry."""
    video = write_scenes(folder / f"clip_{spec.seed:06d}.mp4", scenes_for(spec), fps, size)
    wav = write_wav(folder / f"clip_{spec.seed:06d}.wav", torch.from_numpy(synthesize(spec))[None], SAMPLE_RATE)
    return VideoAudioMeta(path=str(wav.resolve()), duration=spec.duration, sample_rate=SAMPLE_RATE,
                          video_path=str(video.resolve()))


def write_corpus(folder: tp.Union[str, Path], count: int, seed: int = 0, duration: float = 10.0,
                 progress: bool = True, workers: int = 1) -> tp.List[ClipSpec]:
    """Write `count` clips (seeds `seed` .. `seed + count - 1`), `data.jsonl` and `attributes.jsonl`, rendering
    in `workers` processes (the files do not depend on it: each clip is rendered from its own seed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [sample_spec(seed + i, duration) for i in range(count)]
    bar = dict(desc="clips", total=count, disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            metas = list(tqdm(pool.map(write_clip, specs, [folder] * count, chunksize=8), **bar))
    else:
        metas = [write_clip(spec, folder) for spec in tqdm(specs, **bar)]
    save_video_audio_meta(folder / "data.jsonl", metas)
    with open(folder / "attributes.jsonl", "w") as f:
        for spec, meta in zip(specs, metas):
            f.write(json.dumps({**asdict(spec), "video_path": meta.video_path, "path": meta.path,
                                "onsets_per_second": spec.onsets_per_second, "base_note": spec.base_note}) + "\n")
    return specs


def main(argv: tp.Optional[tp.Sequence[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (videos, wavs, data.jsonl, attributes.jsonl)")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0, help="first clip seed (held-out sets use other seeds)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    args = parser.parse_args(argv)
    write_corpus(args.out, args.count, args.seed, args.duration, workers=args.workers)
    print(f"{args.count} clips in {args.out}")


if __name__ == "__main__":
    main()
