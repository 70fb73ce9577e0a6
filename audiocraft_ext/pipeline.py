"""From media files to music files: the generation pipeline shared by `infer.sh` and the Gradio demo.

For each input (a video, or an image seen as a still video) it writes into the output folder:
- `<stem>.wav`: the music, 32 kHz, loudness-normalised as the release, exactly as long as the video;
- `<stem>.mp4`: the input's video stream (copied when mp4 allows it) with the music as 48 kHz AAC;
- `<stem>.json`: a sidecar with the model, its checksum, the parameters and the seed (and, with `sync_cuts`,
  what moving the beats onto the video's cuts did).
Inputs sharing a stem keep their extension in the output name (`a.mov.mp4`). Every file is written atomically
and the sidecar last, so an input whose three outputs exist is complete and is skipped on a rerun.
"""

from dataclasses import asdict, dataclass, field
import datetime
import json
import logging
from pathlib import Path
import typing as tp

import torch
from tqdm import tqdm

from . import __version__
from .media.audio import normalize_music, write_wav
from .media.beat_sync import DEFAULT_MAX_TEMPO_CHANGE, check_max_tempo_change
from .media.extensions import is_image
from .media.mux import ORIGINAL_AUDIO_MODES, mux_music, write_still_video
from .media.video import VideoFrames, VideoInfo, VideoReadError, probe_video, read_image
from .models.lm import check_cfg_coef_beta, check_rerank_candidates
from .models.vidmuse import VidMuse, draw_seed
from .modules.music_descriptors import descriptor_values, readable_descriptors
from .utils.atomic import atomic_output
from .utils.shards import shard

logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    """User-facing generation parameters (defaults: the release's `infer.sh`).

    Attributes:
        top_k, top_p, temperature, cfg_coef, cfg_coef_beta: sampling (see `VidMuse.set_generation_params`;
            cfg_coef_beta None: the model's own).
        rerank_candidates: draws per input for a model with music descriptors, the one nearest the descriptors
            read from the video kept (`VidMuse.set_generation_params`; None: the model's own).
        seed: seed of every input's sampling; None draws one per run (recorded in the sidecars).
        max_duration: music for at most this many seconds of each video (the mp4 is cut to it); None: all.
        image_duration: seconds of music for an image.
        original_audio: `drop`, `keep` (second track) or `mix` (under the music) the input's own audio.
        original_volume: gain of the original audio when mixed.
        resize_mode: `squash` (as the official weights were trained) or `center_crop`.
        description: a text steering the music with the picture (models with a text conditioner only).
        onset_rate, register_hz: for a model with music descriptors, the music's onsets per second and register
            (Hz) asked for instead of those read from the picture (`modules.music_descriptors`); None: read.
        sync_cuts: move the music's beats onto the video's scene cuts (`VidMuse.beats_to_cuts`).
        max_tempo_change: largest local tempo change `sync_cuts` may make (0.15: ±15 %).
    """
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0
    cfg_coef_beta: tp.Optional[float] = None
    rerank_candidates: tp.Optional[int] = None
    seed: tp.Optional[int] = None
    max_duration: tp.Optional[float] = None
    image_duration: float = 10.0
    original_audio: str = "drop"
    original_volume: float = 0.5
    resize_mode: str = "squash"
    description: tp.Optional[str] = None
    onset_rate: tp.Optional[float] = None
    register_hz: tp.Optional[float] = None
    sync_cuts: bool = False
    max_tempo_change: float = DEFAULT_MAX_TEMPO_CHANGE

    def __post_init__(self):
        if self.temperature < 0 or self.top_k < 0 or not 0 <= self.top_p <= 1:
            raise ValueError("temperature and top_k must be >= 0 and top_p in [0, 1]")
        if self.original_audio not in ORIGINAL_AUDIO_MODES:
            raise ValueError(f"original_audio must be one of {ORIGINAL_AUDIO_MODES}")
        if self.max_duration is not None and self.max_duration <= 0:
            raise ValueError("max_duration must be positive")
        if self.image_duration <= 0:
            raise ValueError("image_duration must be positive")
        check_max_tempo_change(self.max_tempo_change)
        # the model-free part of each check; `check_for` makes them against the model's build
        check_cfg_coef_beta(self.cfg_coef_beta)
        if self.rerank_candidates is not None:
            check_rerank_candidates(self.rerank_candidates)
        descriptor_values(self.onset_rate, self.register_hz)

    def check_for(self, model: VidMuse) -> None:
        """`ValueError` naming the setting if `model`'s build cannot take these settings: a description without a
        text conditioner; double guidance, several draws, or an onset rate or register without music
        descriptors; an onset rate or register outside the range the model reads (`descriptor_range`)."""
        if self.description and not model.lm.has_text_conditioner:
            raise ValueError("a description needs a model with a text conditioner (this one has none)")
        visual = model.lm.visual_config
        check_cfg_coef_beta(self.cfg_coef_beta, visual)
        if self.rerank_candidates is not None:
            check_rerank_candidates(self.rerank_candidates, visual)
        asked = descriptor_values(self.onset_rate, self.register_hz)
        if asked.isnan().all():
            return
        if not visual.music_descriptors:
            raise ValueError("onset_rate and register_hz need a model built with music descriptors")
        low, high = model.lm.video_encoder.descriptor_range()
        if ((asked < low) | (asked > high)).any():  # NaN compares False: only the values given
            low, high = readable_descriptors(low), readable_descriptors(high)
            raise ValueError(f"this model reads {low['onset_rate']:.1f}-{high['onset_rate']:.1f} onsets per second "
                             f"and {low['register_hz']:.0f}-{high['register_hz']:.0f} Hz (the range it was trained "
                             f"on): onset_rate {self.onset_rate} and register_hz {self.register_hz} asked")

    def configure(self, model: VidMuse):
        """Set `model`'s sampling to these settings (`VidMuse.set_generation_params`; its window stride kept);
        `ValueError` if its build cannot take them (`check_for`)."""
        self.check_for(model)
        model.set_generation_params(top_k=self.top_k, top_p=self.top_p, temperature=self.temperature,
                                    cfg_coef=self.cfg_coef, cfg_coef_beta=self.cfg_coef_beta,
                                    rerank_candidates=self.rerank_candidates, extend_stride=model.extend_stride)


@dataclass
class GeneratedMusic:
    """The music of one input: its waveform `[C, N]` and the music descriptors it was conditioned on
    (`readable_descriptors`: read from the picture or set by hand; None for a model without them)."""
    wav: torch.Tensor
    descriptors: tp.Optional[tp.Dict[str, float]] = None


@dataclass
class OutputPaths:
    """The three outputs of one input."""
    wav: Path
    mp4: Path
    sidecar: Path

    def complete(self) -> bool:
        return self.wav.is_file() and self.mp4.is_file() and self.sidecar.is_file()


@dataclass
class PreparedInput:
    """An input read and ready for generation."""
    path: Path
    frames: VideoFrames
    duration: float
    image: tp.Optional[torch.Tensor] = None  # set for still images
    info: tp.Optional[VideoInfo] = None  # set for videos

    @property
    def is_image(self) -> bool:
        return self.image is not None


@dataclass
class RunSummary:
    """Outcome of a batch run."""
    done: tp.List[Path] = field(default_factory=list)
    skipped: tp.List[Path] = field(default_factory=list)
    failed: tp.List[tp.Tuple[Path, str]] = field(default_factory=list)

    def lines(self) -> tp.List[str]:
        lines = [f"done: {len(self.done)}, skipped (outputs exist): {len(self.skipped)}, failed: {len(self.failed)}"]
        lines += [f"  failed: {path}: {reason}" for path, reason in self.failed]
        return lines


def output_paths(inputs: tp.Sequence[Path], output_dir: Path) -> tp.Dict[Path, OutputPaths]:
    """Output names: `<stem>.*`, or `<name>.*` (extension kept) for inputs that share a stem; a name still
    taken (e.g. `a.mov` and `a.mov.mkv` both giving `a.mov`) gets a counter, `a.mov-2.*`."""
    stems: tp.Dict[str, int] = {}
    for path in inputs:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    result, used = {}, set()
    for path in inputs:
        base = path.stem if stems[path.stem] == 1 else path.name
        candidate, counter = base, 1
        while candidate in used:
            counter += 1
            candidate = f"{base}-{counter}"
        used.add(candidate)
        result[path] = OutputPaths(output_dir / f"{candidate}.wav", output_dir / f"{candidate}.mp4",
                                   output_dir / f"{candidate}.json")
    return result


def prepare_input(model: VidMuse, path: Path, settings: GenerationSettings) -> PreparedInput:
    """Read a video's frames (or an image as a still video) for `model`. Raises `VideoReadError`."""
    if is_image(path):
        image = read_image(path)
        frames = model.image_frames(image, settings.image_duration, settings.resize_mode, str(path))
        return PreparedInput(path, frames, settings.image_duration, image)
    info = probe_video(path)
    duration = info.duration if settings.max_duration is None else min(info.duration, settings.max_duration)
    frames = model.load_video(path, settings.resize_mode, duration, info)
    return PreparedInput(path, frames, duration, info=info)


def generate_music(model: VidMuse, items: tp.Sequence[PreparedInput], settings: GenerationSettings, seed: int,
                   progress: bool = False) -> tp.List[GeneratedMusic]:
    """Music for prepared inputs with `settings`' description and music descriptors (the model's sampling set by
    the caller, `GenerationSettings.configure`), all seeded `seed`: each item's waveform `[C, N]` and, for a
    model with music descriptors, those it was conditioned on: read from its picture, with those the settings
    set in their place."""
    frames = [item.frames for item in items]
    descriptors = model.predict_music_descriptors(frames)  # [B, len(DESCRIPTORS)]
    if descriptors is not None:
        asked = descriptor_values(settings.onset_rate, settings.register_hz).to(descriptors)
        descriptors = torch.where(asked.isnan(), descriptors, asked)
    texts = [settings.description] * len(items) if settings.description else None
    music = model.generate(frames, seed=seed, progress=progress, descriptions=texts, music_descriptors=descriptors)
    if descriptors is None:
        return [GeneratedMusic(wav) for wav in music]
    return [GeneratedMusic(wav, readable_descriptors(row)) for wav, row in zip(music, descriptors.cpu())]


def write_outputs(model: VidMuse, item: PreparedInput, music: GeneratedMusic, paths: OutputPaths,
                  settings: GenerationSettings, seed: int, model_checksum: tp.Optional[str]) -> tp.Dict[str, tp.Any]:
    """Write the wav, the mp4 and (last) the sidecar of one input, each atomically; with `settings.sync_cuts`,
    the music's beats are first moved onto the video's cuts. Returns the sidecar's content."""
    cut_sync = None
    wav = music.wav
    if settings.sync_cuts:
        wav, report = model.beats_to_cuts(wav, item.frames, settings.max_tempo_change)
        cut_sync = report.to_dict()
    wav = normalize_music(wav, model.sample_rate)
    write_wav(paths.wav, wav, model.sample_rate)
    if item.image is not None:
        write_still_video(item.image, wav, model.sample_rate, paths.mp4, item.duration)
    else:
        mux_music(item.path, wav, model.sample_rate, paths.mp4, original_audio=settings.original_audio,
                  original_volume=settings.original_volume, duration=item.duration, info=item.info)
    sidecar = {
        "input": str(item.path), "kind": "image" if item.is_image else "video", "duration": item.duration,
        "sample_rate": model.sample_rate, "outputs": {"wav": paths.wav.name, "mp4": paths.mp4.name},
        "model": model.name, "model_sha256": model_checksum, "seed": seed,
        "weights": {"format": model.lm.weight_format, "device": str(model.device)},  # int8 changes the codes
        "parameters": {**{k: v for k, v in asdict(settings).items() if k != "seed"},
                       "rerank_candidates": model.rerank_candidates},  # the model's own when not set
        "music_descriptors": music.descriptors,  # asked for: read from the picture, or set (the parameters)
        "cut_sync": cut_sync,
        "audiocraft_ext": __version__, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    with atomic_output(paths.sidecar) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=2))
    return sidecar


def run(model: VidMuse, inputs: tp.Sequence[Path], output_dir: Path, settings: GenerationSettings,
        batch_size: int = 1, overwrite: bool = False, model_checksum: tp.Optional[str] = None,
        progress: bool = True, num_shards: int = 1, shard_index: int = 0) -> RunSummary:
    """Generate music for every input of shard `shard_index` of `num_shards` (the round-robin share of
    `inputs`, see `utils.shards.shard`; the default is all of them); a bad input is reported and the others go
    on. Output names come from the whole list, so that every shard names an input alike.

    Returns the `RunSummary` of the shard's inputs (done, skipped, failed with reasons).
    """
    settings.configure(model)
    output_dir.mkdir(parents=True, exist_ok=True)
    seed = settings.seed if settings.seed is not None else draw_seed()
    paths = output_paths(inputs, output_dir)
    summary = RunSummary()
    todo = []
    for path in shard(inputs, num_shards, shard_index):
        if paths[path].complete() and not overwrite:
            summary.skipped.append(path)
        else:
            todo.append(path)
    bar = tqdm(total=len(todo), desc="inputs", unit="file", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch: tp.List[PreparedInput] = []
        for path in todo[start:start + batch_size]:
            try:
                batch.append(prepare_input(model, path, settings))
            except (VideoReadError, ValueError) as err:
                summary.failed.append((path, getattr(err, "reason", str(err))))
                bar.update(1)
            except Exception as err:  # anything else odd about one file must not stop the others
                logger.debug("reading %s failed", path, exc_info=True)
                summary.failed.append((path, f"cannot read: {err.__class__.__name__}: {err}"))
                bar.update(1)
        if not batch:
            continue
        long_batch = max(item.duration for item in batch) > model.max_duration
        try:
            music = generate_music(model, batch, settings, seed, progress=progress and long_batch)
        except Exception as err:  # e.g. out of memory: report for these inputs, go on with the next batch
            logger.exception("generation failed")
            summary.failed.extend((item.path, f"generation failed: {err.__class__.__name__}: {err}") for item in batch)
            bar.update(len(batch))
            continue
        for item, item_music in zip(batch, music):
            try:
                write_outputs(model, item, item_music, paths[item.path], settings, seed, model_checksum)
                summary.done.append(item.path)
            except VideoReadError as err:
                summary.failed.append((item.path, err.reason))
            except Exception as err:
                logger.debug("writing outputs failed", exc_info=True)
                summary.failed.append((item.path, f"writing outputs failed: {err.__class__.__name__}: {err}"))
            bar.update(1)
    bar.close()
    return summary
