"""Video-music pairs for training: AudioCraft's `AudioDataset` with the frames of each segment.

A manifest line is AudioCraft's `AudioMeta` plus `video_path` (AudioCraft's own loader drops unknown fields, so
`VideoAudioMeta` and `load_video_audio_meta` keep it). Each item is `(wav [C, T], local, global, info)`
(`info.description` holds the optional text):
- the audio segment, resampled and padded to `segment_duration`;
- local frames of the same time span at `local_fps` (uint8 `[3, Tl, H, W]`), or their cached CLIP tokens
  (`[Tl, P, D]`), frame k at `seek + k / local_fps` (timestamp-aligned with the audio);
- global frames spread over the whole video (`[3, Tg, H, W]` or tokens `[Tg, P, D]`).
Segments start at multiples of the segment duration by default, as the release's dataset does.

Clips that share a manifest `group` are variants of one scene (for instance the same clip at another motion
speed, `synth.corpus --speed_pairs`); with `pair_variants` each item is a clip and another clip of its group at
the same segment start, and the collater puts the two side by side (a batch of B items holds 2B segments, the
variants at 2j and 2j + 1), so that a contrastive loss can tell them apart by what differs between them.
"""

from dataclasses import dataclass
import gzip
import json
import logging
import math
from pathlib import Path
import typing as tp

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_dataset import AudioDataset, AudioMeta, SegmentInfo
from audiocraft.data.audio_utils import convert_audio
import torch
from torch.nn import functional as F

from ..media.video import VideoFrames, load_video_frames
from .feature_cache import FeatureCache

logger = logging.getLogger(__name__)
SEEK_MODES = ("release", "random")


@dataclass(order=True)
class VideoAudioMeta(AudioMeta):
    """`AudioMeta` with the video the music goes with, an optional text description of the music (else read
    from the `description` of AudioCraft's MusicInfo sidecar `<audio>.json`, when there is one), an optional
    `group`: clips sharing it are variants of one scene (see `VideoAudioDataset`'s `pair_variants`), and an optional
    `domain`: the kind of video (a source, a style, a look), whose clips the descriptor read-out's
    cross-validation holds out together (`VideoEncoder.fit_descriptor_head`)."""
    video_path: str = ""
    description: tp.Optional[str] = None
    group: tp.Optional[str] = None
    domain: tp.Optional[str] = None

    @classmethod
    def from_dict(cls, dictionary: dict) -> "VideoAudioMeta":
        """AudioCraft's `from_dict`, refusing an entry without `video_path` (`ValueError`)."""
        meta = super().from_dict(dictionary)
        if not meta.video_path:
            raise ValueError(f"manifest entry without video_path (path: {dictionary.get('path')})")
        return meta


@dataclass(order=True)
class VideoSegmentInfo(SegmentInfo):
    """`SegmentInfo` with the item's text description (None when it has none)."""
    description: tp.Optional[str] = None


def read_description(meta: VideoAudioMeta) -> tp.Optional[str]:
    """The manifest's description, else the `description` of the audio's sidecar json, else None."""
    if meta.description:
        return meta.description
    sidecar = Path(meta.path).with_suffix(".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text()).get("description") or None
        except (json.JSONDecodeError, AttributeError):
            logger.warning("unreadable sidecar %s", sidecar)
    return None


def load_video_audio_meta(path: tp.Union[str, Path]) -> tp.List[VideoAudioMeta]:
    """Read a `data.jsonl` (or `.jsonl.gz`) manifest, or the one inside a folder.

    A line that is not a valid entry (not JSON, a missing field, no `video_path`) raises `ValueError` naming the
    file and the line number.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / "data.jsonl", path / "data.jsonl.gz"]
        path = next((p for p in candidates if p.exists()), candidates[0])
    opener = gzip.open if path.suffix == ".gz" else open
    metas = []
    with opener(path, "rt") as f:  # type: ignore[operator]
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                metas.append(VideoAudioMeta.from_dict(json.loads(line)))
            except (TypeError, ValueError) as err:  # JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{number}: {err}") from None
    return metas


def save_video_audio_meta(path: tp.Union[str, Path], metas: tp.Sequence[VideoAudioMeta]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for meta in metas:
            f.write(json.dumps(meta.to_dict()) + "\n")


def release_seek(duration: float, segment: float, min_segment_ratio: float, u: float) -> float:
    """The release's segment start: a multiple of `segment` within `[0, duration - segment * min_ratio]`."""
    max_seek = max(0.0, duration - segment * min_segment_ratio)
    return segment * math.floor(u * max_seek / segment)


class VideoAudioDataset(AudioDataset):
    """`AudioDataset` returning `(wav, local, global, info)`; see the module docstring.

    Args:
        meta: the pairs.
        local_fps: rate of the local frames.
        num_global_frames: global frames per item.
        frame_size, resize_mode: frame preprocessing (see `load_video_frames`).
        seek_mode: `release` (segments start at multiples of the segment duration) or `random` (anywhere, on the
            local frame grid).
        feature_cache: return cached CLIP tokens instead of frames (built beforehand, see `FeatureCache`).
        pair_variants: each item is a clip and another clip of its manifest `group`, at the same segment start
            (`ValueError` if a clip has no other clip in its group); see the module docstring.
        **kwargs: `AudioDataset` arguments (segment_duration, sample_rate, channels, shuffle, ...).
    """

    def __init__(self, meta: tp.List[VideoAudioMeta], local_fps: float = 2.0, num_global_frames: int = 32,
                 frame_size: int = 224, resize_mode: str = "squash", seek_mode: str = "release",
                 feature_cache: tp.Optional[FeatureCache] = None, pair_variants: bool = False, **kwargs):
        kwargs["return_info"] = True
        super().__init__(meta, **kwargs)  # type: ignore[arg-type]
        if self.segment_duration is None:
            raise ValueError("VideoAudioDataset needs a segment_duration")
        if seek_mode not in SEEK_MODES:
            raise ValueError(f"seek_mode must be one of {SEEK_MODES}")
        self.local_fps = local_fps
        self.num_global_frames = num_global_frames
        self.frame_size = frame_size
        self.resize_mode = resize_mode
        self.seek_mode = seek_mode
        self.feature_cache = feature_cache
        self.variants: tp.Optional[tp.Dict[str, tp.List[VideoAudioMeta]]] = None
        if pair_variants:
            self.variants = {}
            for meta in self.meta:
                self.variants.setdefault(meta.group or meta.path, []).append(meta)  # type: ignore[attr-defined]
            alone = [metas[0].path for metas in self.variants.values() if len(metas) < 2]
            if alone:
                raise ValueError(f"pair_variants: {len(alone)} clips have no variant in their group "
                                 f"(manifest field `group`), e.g. {alone[0]}")

    def _rng(self, index: int) -> torch.Generator:
        rng = torch.Generator()
        if self.shuffle:  # as AudioDataset: new draws every epoch, reproducible given the epoch
            epoch = self.current_epoch if self.current_epoch is not None else 0
            rng.manual_seed(index + self.num_samples * (epoch + self.shuffle_seed))
        else:
            rng.manual_seed(index)
        return rng

    def _seek(self, meta: VideoAudioMeta, rng: torch.Generator) -> float:
        assert self.segment_duration is not None
        u = torch.rand(1, generator=rng).item()
        if self.seek_mode == "release":
            return release_seek(meta.duration, self.segment_duration, self.min_segment_ratio, u)
        max_seek = max(0.0, meta.duration - self.segment_duration * self.min_segment_ratio)
        return math.floor(u * max_seek * self.local_fps) / self.local_fps

    def __getitem__(self, index: int):  # type: ignore[override]
        """`(wav, local, global, info)` of a segment; with `pair_variants`, a list of two such tuples."""
        assert self.segment_duration is not None
        rng = self._rng(index)
        for retry in range(self.max_read_retry):
            meta = self.sample_file(index, rng)
            assert isinstance(meta, VideoAudioMeta)
            seek = self._seek(meta, rng)
            metas = [meta]
            if self.variants is not None:
                others = [other for other in self.variants[meta.group or meta.path] if other is not meta]
                metas.append(others[int(torch.randint(len(others), (1,), generator=rng))])
            try:
                items = [self._segment(one, seek) for one in metas]
            except Exception as exc:
                logger.warning("cannot read %s: %r", " / ".join(f"{m.path} / {m.video_path}" for m in metas), exc)
                if retry == self.max_read_retry - 1:
                    raise
            else:
                break
        return items if self.variants is not None else items[0]

    def _segment(self, meta: VideoAudioMeta, seek: float):
        assert self.segment_duration is not None
        wav, sr = audio_read(meta.path, seek, self.segment_duration, pad=False)
        wav = convert_audio(wav, sr, self.sample_rate, self.channels)
        n_frames = wav.shape[-1]
        target = int(self.segment_duration * self.sample_rate)
        wav = F.pad(wav, (0, target - n_frames))
        local, glob = self._visual(meta, seek)
        info = VideoSegmentInfo(meta, seek, n_frames=n_frames, total_frames=target, sample_rate=self.sample_rate,
                                channels=wav.shape[0], description=read_description(meta))
        return wav, local, glob, info

    def _visual(self, meta: VideoAudioMeta, seek: float) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        assert self.segment_duration is not None
        if self.feature_cache is not None:
            return self.feature_cache.segment(meta.video_path, seek, self.segment_duration)
        frames = load_video_frames(meta.video_path, start=seek, duration=self.segment_duration,
                                   local_fps=self.local_fps, num_global_frames=self.num_global_frames,
                                   size=self.frame_size, resize_mode=self.resize_mode)
        return frames.local_frames, frames.global_frames

    def whole_video(self, meta: VideoAudioMeta) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """The local frames of a clip's whole video at `local_fps` (uint8 `[3, Tl, H, W]`, or cached CLIP tokens
        `[Tl, P, D]`) and its global frames."""
        if self.feature_cache is not None:
            return self.feature_cache.whole(meta.video_path)
        frames = self.whole_frames(meta)
        return frames.local_frames, frames.global_frames

    def whole_frames(self, meta: VideoAudioMeta) -> VideoFrames:
        """The frames of a clip's whole video, decoded (never from the feature cache): local frames at
        `local_fps` (uint8 `[3, Tl, H, W]`) and global frames."""
        return load_video_frames(meta.video_path, local_fps=self.local_fps, num_global_frames=self.num_global_frames,
                                 size=self.frame_size, resize_mode=self.resize_mode)

    def collater(self, samples):  # type: ignore[override]
        """`(wav [B, C, T], local, global, infos)`; with `pair_variants`, `2B` segments, variants side by side."""
        if self.variants is not None:
            samples = [segment for pair in samples for segment in pair]
        wavs, local, glob, infos = zip(*samples)
        return torch.stack(wavs), torch.stack(local), torch.stack(glob), list(infos)
