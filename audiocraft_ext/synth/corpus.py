"""A procedural audio-visual corpus whose music follows its video by explicit rules.

Each clip is a few scenes (shots) of shapes in front of a background, filmed by a moving camera under a light;
its music, played by General MIDI instruments (FluidSynth, `music.py`), is composed from the same knobs:
- **brightness -> pitch register**: the scene's brightness (through a gain, an exposure or a spot light's
  intensity) sets the register of the whole band (brighter picture, higher notes);
- **speed -> tempo**: one speed drives every motion of the clip (the shapes' orbits and drifts, the camera's pan
  or zoom) and sets the note rate (faster motion, more onsets per second); the drums' pattern follows it too
  (kick and snare when slow, a hi-hat on every note above a third of the range, off-beat hats in the top third);
- **background hue -> chord**: every scene plays its own chord of a progression, named by the hue of its
  background (five hue sectors, one per chord), so a scene cut is a chord change (and a crash cymbal) the
  picture announces.
Motion stays slow enough for 2 fps local frames to resolve it (under a quarter turn, and under half a stripe
period of pan, between two frames 0.5 s apart), and fast enough at the top of its range for a shape to cross a
32-pixel CLIP patch between them.

The pictures vary at random so that a model has to learn the rules rather than the pictures: the **look**
(background family: `flat`, `gradient`, `stripes`, `texture`, `landscape`, and `bokeh`, which training corpora
never contain: it is held out for evaluation), 0-4 shapes of five kinds, sizes and paths, the camera (pan,
zoom or still), the lighting, portrait and landscape frame sizes, frame rates and compression levels. The
instruments (melody, bass, pad) are drawn per clip. A clip's music depends on its seed only, not on its look.

    python -m audiocraft_ext.synth.corpus --out egs/synth/train --count 2000 --seed 0 --workers 2
    python -m audiocraft_ext.synth.corpus --out egs/synth/test --count 24 --seed 100000 --looks held_out

With `--speed_pairs`, each seed is written twice: the clip, and the same clip at another speed (`speed_variant`:
the same scenes, camera, lighting, band and chords; other motion and so another tempo), sharing the manifest
`group` so that training can contrast the two (`dataset.pair_variants`).
"""

import argparse
import colorsys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
import json
import logging
from pathlib import Path
import sys
import typing as tp

import numpy as np
import torch
from tqdm import tqdm

from ..data.video_dataset import VideoAudioMeta, save_video_audio_meta
from ..media.audio import write_wav
from .music import DRUM_CHANNEL, MusicRenderError, Note, render_notes
from .scenes import LIGHTINGS, SHAPES, Scene, Shape, write_scenes

logger = logging.getLogger(__name__)

SAMPLE_RATE = 32000
BRIGHTNESS_RANGE = (0.35, 1.15)
SPEED_RANGE = (0.04, 0.44)       # orbit turns (and pan frames) per second: <= 0.22 between 2 fps frames
VARIANT_SPEED_SHIFT = (0.35, 0.65)  # a speed variant's distance from its clip, as a share of SPEED_RANGE (cyclic)
ONSETS_RANGE = (1.0, 5.0)        # melody notes per second
BASE_NOTE_RANGE = (45, 72)       # MIDI note of the melody's lowest chord tone: A2 (dark) .. C5 (bright)
STRIPE_PERIOD = 0.5             # frame units: the pan (<= 0.22 frame between 2 fps frames) stays under half of it
STRIPES_RANGE = (0.15, 0.3)      # relative amplitude of the background's stripes
ZOOM_PER_SPEED = 0.5             # camera zoom (log scale per second) per unit of speed
PROGRESSION = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (2, 5, 9)]  # I, IV, V, vi, ii (semitones)
HUE_JITTER = 0.04                # chord k's hue sector is centred on k / 5: red, yellow-green, green, azure, violet
SATURATION_RANGE = (0.45, 0.85)
VALUE_RANGE = (0.45, 0.85)       # before the lighting
LOOKS = ("flat", "gradient", "stripes", "texture", "landscape", "bokeh")
HELD_OUT_LOOKS = ("bokeh",)      # never in a training corpus: the evaluation's unseen look
TRAIN_LOOKS = tuple(look for look in LOOKS if look not in HELD_OUT_LOOKS)
FRAME_RATES = (10, 12, 15, 24)
FRAME_SIZES = ((128, 128), (160, 96), (96, 160), (176, 112), (112, 176))  # width, height: landscape and portrait
CRFS = (18, 23, 28, 34)          # x264 constant rate factors: light to heavy compression
MELODY_PROGRAMS = (0, 4, 11, 12, 24, 25, 45, 46, 108)  # piano, e-piano, vibraphone, marimba, guitars, pizzicato,
                                                       # harp, kalimba: struck or plucked, so every note has an onset
BASS_PROGRAMS = (32, 33, 34, 38)                       # acoustic, finger, pick and synth bass
PAD_PROGRAMS = (48, 49, 52, 89)                        # strings, slow strings, choir, warm pad
KICK, SNARE, CLOSED_HAT, CRASH = 36, 38, 42, 49        # General MIDI percussion keys
MELODY, BASS, PAD = 0, 1, 2                            # MIDI channels


@dataclass
class ClipSpec:
    """The knobs of one clip; the video and the music are both rendered from them."""
    seed: int
    duration: float
    brightness: float
    speed: float
    cuts: tp.List[float] = field(default_factory=list)   # scene change times (s)
    chords: tp.List[int] = field(default_factory=list)   # index in PROGRESSION for each scene
    look: str = "stripes"                                # background family, one of LOOKS

    @property
    def onsets_per_second(self) -> float:
        return _lerp(ONSETS_RANGE, _unit(self.speed, SPEED_RANGE))

    @property
    def base_note(self) -> float:
        return _lerp(BASE_NOTE_RANGE, _unit(self.brightness, BRIGHTNESS_RANGE))


@dataclass
class VideoFormat:
    """How a clip's video is written: frames per second, (width, height), x264 constant rate factor."""
    fps: int
    size: tp.Tuple[int, int]
    crf: int


def spec_from_row(row: tp.Dict[str, tp.Any]) -> "ClipSpec":
    """The `ClipSpec` of a row of `attributes.jsonl` (which holds its fields and measured extras)."""
    return ClipSpec(**{f.name: row[f.name] for f in fields(ClipSpec) if f.name in row})


def chord_variants(spec: ClipSpec) -> tp.List[ClipSpec]:
    """`spec` itself, then the same clip with every scene's chord moved k steps along `PROGRESSION`
    (k = 1 .. 4): same register, tempo and cuts, other harmony in every scene."""
    return [replace(spec, chords=[(chord + k) % len(PROGRESSION) for chord in spec.chords])
            for k in range(len(PROGRESSION))]


def _unit(value: float, bounds: tp.Tuple[float, float]) -> float:
    return (value - bounds[0]) / (bounds[1] - bounds[0])


def _lerp(bounds: tp.Tuple[float, float], t: float) -> float:
    return bounds[0] + t * (bounds[1] - bounds[0])


def _pick(rng: np.random.Generator, options: tp.Sequence[tp.Any]) -> tp.Any:
    return options[int(rng.integers(0, len(options)))]


def sample_spec(seed: int, duration: float = 10.0, looks: tp.Sequence[str] = TRAIN_LOOKS) -> ClipSpec:
    """Random knobs for clip `seed`: brightness and speed uniform in their ranges, one or two cuts, a look drawn
    from `looks` (from its own random stream: the rest, and so the music, do not depend on `looks`)."""
    unknown = set(looks) - set(LOOKS)
    if unknown or not looks:
        raise ValueError(f"unknown looks {sorted(unknown) or '(none given)'}: choose among {', '.join(LOOKS)}")
    rng = np.random.default_rng(seed)
    num_cuts = int(rng.integers(1, 3))
    cuts = sorted(float(c) for c in rng.uniform(duration * 0.25, duration * 0.8, size=num_cuts))
    chords = [int(c) for c in rng.permutation(len(PROGRESSION))[:num_cuts + 1]]
    look = _pick(np.random.default_rng([seed, 3]), looks)
    return ClipSpec(seed, duration, float(rng.uniform(*BRIGHTNESS_RANGE)), float(rng.uniform(*SPEED_RANGE)),
                    cuts, chords, look)


def speed_variant(spec: ClipSpec) -> ClipSpec:
    """The clip `spec` at another speed, at least a third of `SPEED_RANGE` away (drawn from the seed's own stream):
    everything else, the picture's layout and the music's band, chords and register, stays."""
    shift = np.random.default_rng([spec.seed, 6]).uniform(*VARIANT_SPEED_SHIFT)
    return replace(spec, speed=_lerp(SPEED_RANGE, (_unit(spec.speed, SPEED_RANGE) + shift) % 1.0))


def video_format(seed: int) -> VideoFormat:
    """The frame rate, size and compression of clip `seed`'s video."""
    rng = np.random.default_rng([seed, 4])
    return VideoFormat(_pick(rng, FRAME_RATES), _pick(rng, FRAME_SIZES), _pick(rng, CRFS))


def chord_color(chord: int, rng: np.random.Generator) -> tp.Tuple[int, int, int]:
    """An RGB background colour whose hue lies in the sector of `chord` (index in `PROGRESSION`), with random
    saturation and value."""
    hue = (chord / len(PROGRESSION) + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*SATURATION_RANGE), rng.uniform(*VALUE_RANGE))
    return tuple(int(round(255 * c)) for c in rgb)


def _shapes(rng: np.random.Generator, speed: float, count: int) -> tp.List[Shape]:
    return [Shape(kind=_pick(rng, SHAPES), color=tuple(int(c) for c in rng.integers(90, 256, 3)),
                  size=float(rng.uniform(0.1, 0.3)),
                  center=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
                  orbit=float(rng.uniform(0.15, 0.3)), speed=speed * float(_pick(rng, (-1, 1))),
                  phase=float(rng.uniform(0, 1)), path=_pick(rng, ("orbit", "drift")),
                  direction=float(rng.uniform(0, 2 * np.pi))) for _ in range(count)]


def scenes_for(spec: ClipSpec) -> tp.List[Scene]:
    """The video: one `Scene` per segment between cuts, of the clip's look, its background in the hue of the
    scene's chord; the shapes and the camera (a pan, a zoom, or still with at least one shape) move at the
    clip's speed; the lighting renders the clip's brightness."""
    rng = np.random.default_rng(spec.seed + 1)
    bounds = [0.0, *spec.cuts, spec.duration]
    scenes = []
    for scene, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        chord = spec.chords[scene % len(spec.chords)]
        camera = _pick(rng, ("pan", "pan", "zoom", "still"))
        shapes = _shapes(rng, spec.speed, int(rng.integers(1 if camera == "still" else 0, 5)))
        # a landscape pans along its horizon; other looks in any direction
        direction = float(_pick(rng, (0.0, np.pi))) if spec.look == "landscape" else float(rng.uniform(0, 2 * np.pi))
        pan = (spec.speed * float(np.cos(direction)), spec.speed * float(np.sin(direction)))
        stripes = float(rng.uniform(*STRIPES_RANGE)) if spec.look == "stripes" else 0.0
        scenes.append(Scene(end - start, chord_color(chord, rng), chord_color(chord, rng), spec.brightness, shapes,
                            stripes=stripes, stripe_period=STRIPE_PERIOD,
                            pan=pan if camera == "pan" else (0.0, 0.0),
                            background="gradient" if spec.look == "stripes" else spec.look,
                            pattern_seed=int(rng.integers(0, 2 ** 31)),
                            stripe_angle=float(rng.uniform(0, np.pi)),
                            zoom=spec.speed * ZOOM_PER_SPEED * float(_pick(rng, (-1, 1))) if camera == "zoom" else 0.0,
                            lighting=_pick(rng, LIGHTINGS),
                            light=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.1, 0.6)))))
    return scenes


@dataclass
class Band:
    """The General MIDI programs that play a clip: melody, bass, pad (the drums are General MIDI's kit)."""
    melody: int
    bass: int
    pad: int


def band_for(spec: ClipSpec) -> Band:
    """Clip `spec.seed`'s instruments (its own random stream: chord variants of a clip keep its band)."""
    rng = np.random.default_rng([spec.seed, 5])
    return Band(_pick(rng, MELODY_PROGRAMS), _pick(rng, BASS_PROGRAMS), _pick(rng, PAD_PROGRAMS))


def score_for(spec: ClipSpec) -> tp.List[Note]:
    """The notes of the clip's music, by the rules: per scene, a melody stepping through the scene's chord tones
    (in the register of the brightness, one note every 1 / `onsets_per_second` s), a bass on the chord's root every
    other note, a sustained pad chord, a crash at each cut and drums on the melody's grid whose pattern grows
    with the speed. The drums stay soft: louder, they blurred the register measured from the mix (Spearman
    brightness -> median pitch 0.71 against 0.78 on 24 clips, 0.78 without drums)."""
    rng = np.random.default_rng(spec.seed + 2)
    base = int(round(spec.base_note))
    step = 1.0 / spec.onsets_per_second
    busy = _unit(spec.speed, SPEED_RANGE)  # 0 .. 1: how much the drums play
    bounds = [0.0, *spec.cuts, spec.duration]
    notes: tp.List[Note] = []
    for scene, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        chord = PROGRESSION[spec.chords[scene % len(spec.chords)]]
        tones = sorted(base + c + 12 * octave for c in chord for octave in (0, 1))
        notes += [Note(start, end - start, base + c, 45, PAD) for c in chord]
        if scene:
            notes.append(Note(start, 1.0, CRASH, 60, DRUM_CHANNEL))
        index, beat, onset = int(rng.integers(0, 3)), 0, start
        while onset < end - 0.05:
            length = min(step * 0.9, end - onset)
            accent = 100 if beat % 4 == 0 else 80
            notes.append(Note(onset, length, tones[index], accent, MELODY))
            index = int(np.clip(index + _pick(rng, (-2, -1, -1, 1, 1, 2)), 0, len(tones) - 1))
            if beat % 2 == 0:
                notes.append(Note(onset, min(2 * step * 0.9, end - onset), base + chord[0] - 12, 85, BASS))
            drums = [KICK] if beat % 4 == 0 or (busy > 0.5 and beat % 4 == 3) else []
            drums += [SNARE] if beat % 4 == 2 else []
            drums += [CLOSED_HAT] if busy > 1 / 3 else []
            notes += [Note(onset, 0.1, key, 55, DRUM_CHANNEL) for key in drums]
            if busy > 2 / 3 and onset + step / 2 < end - 0.05:
                notes.append(Note(onset + step / 2, 0.05, CLOSED_HAT, 35, DRUM_CHANNEL))
            onset += step
            beat += 1
    return notes


def synthesize(spec: ClipSpec, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The music: `score_for(spec)` played by the clip's band (`band_for`) through FluidSynth.

    Returns float32 `[N]` mono audio of `spec.duration` seconds, peak-normalised to 0.8.
    """
    band = band_for(spec)
    out = render_notes(score_for(spec), {MELODY: band.melody, BASS: band.bass, PAD: band.pad, DRUM_CHANNEL: 0},
                       spec.duration, sample_rate)
    peak = np.abs(out).max()
    return (out / peak * 0.8 if peak > 0 else out).astype(np.float32)


def write_clip(spec: ClipSpec, folder: Path, suffix: str = "", group: tp.Optional[str] = None) -> VideoAudioMeta:
    """Write `clip_<seed><suffix>.mp4` (no audio, in the clip's `video_format`) and `clip_<seed><suffix>.wav`;
    return the manifest entry (in `group`, if given)."""
    video_fmt = video_format(spec.seed)
    stem = f"clip_{spec.seed:06d}{suffix}"
    video = write_scenes(folder / f"{stem}.mp4", scenes_for(spec), video_fmt.fps, video_fmt.size, crf=video_fmt.crf)
    wav = write_wav(folder / f"{stem}.wav", torch.from_numpy(synthesize(spec))[None], SAMPLE_RATE)
    return VideoAudioMeta(path=str(wav.resolve()), duration=spec.duration, sample_rate=SAMPLE_RATE,
                          video_path=str(video.resolve()), group=group, domain=spec.look)


def write_corpus(folder: tp.Union[str, Path], count: int, seed: int = 0, duration: float = 10.0,
                 progress: bool = True, workers: int = 1, looks: tp.Sequence[str] = TRAIN_LOOKS,
                 speed_pairs: bool = False) -> tp.List[ClipSpec]:
    """Write `count` clips (seeds `seed` .. `seed + count - 1`) of the given `looks`, `data.jsonl` and
    `attributes.jsonl`, rendering in `workers` processes (the files do not depend on it: each clip is rendered
    from its own seed). With `speed_pairs`, each clip is followed by its `speed_variant` (`clip_<seed>_b`), the
    two in the manifest group `<seed>`; returns the specs in the manifest's order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs, suffixes, groups = [], [], []
    for spec in (sample_spec(seed + i, duration, looks) for i in range(count)):
        pair = [spec, speed_variant(spec)] if speed_pairs else [spec]
        specs += pair
        suffixes += ["", "_b"][:len(pair)]
        groups += [str(spec.seed) if speed_pairs else None] * len(pair)
    bar = dict(desc="clips", total=len(specs), disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            metas = list(tqdm(pool.map(write_clip, specs, [folder] * len(specs), suffixes, groups, chunksize=8),
                              **bar))
    else:
        metas = [write_clip(*args) for args in tqdm(zip(specs, [folder] * len(specs), suffixes, groups), **bar)]
    save_video_audio_meta(folder / "data.jsonl", metas)
    with open(folder / "attributes.jsonl", "w") as f:
        for spec, meta in zip(specs, metas):
            f.write(json.dumps({**asdict(spec), **asdict(video_format(spec.seed)), "video_path": meta.video_path,
                                "path": meta.path, "group": meta.group, "onsets_per_second": spec.onsets_per_second,
                                "base_note": spec.base_note, "band": asdict(band_for(spec))}) + "\n")
    logger.info("%d clips (%s) in %s", len(specs), ", ".join(sorted(set(s.look for s in specs))), folder)
    return specs


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (videos, wavs, data.jsonl, attributes.jsonl)")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0, help="first clip seed (held-out sets use other seeds)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--looks", nargs="+", default=["train"], metavar="LOOK",
                        help=f"background families among {', '.join(LOOKS)}; `train` for all but the held-out "
                             f"{', '.join(HELD_OUT_LOOKS)} (the default), `held_out` for those only")
    parser.add_argument("--speed_pairs", action="store_true",
                        help="also write each clip at another speed (clip_<seed>_b), grouped with it in the manifest")
    args = parser.parse_args(argv)
    looks = [look for name in args.looks
             for look in {"train": TRAIN_LOOKS, "held_out": HELD_OUT_LOOKS}.get(name, (name,))]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        write_corpus(args.out, args.count, args.seed, args.duration, workers=args.workers, looks=looks,
                     speed_pairs=args.speed_pairs)
    except (ValueError, MusicRenderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
