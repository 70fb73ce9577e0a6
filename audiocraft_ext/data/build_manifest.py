"""Build a training manifest `egs/<name>/data.jsonl` from videos.

Two layouts:
- `--videos DIR`: the music of each video is its own audio track, extracted with PyAV to
  `egs/<name>/audio/<stem>.wav` (optionally with the vocals removed by demucs, as the release's data pipeline did);
- `--videos DIR --audio DIR`: video and audio files paired by file stem (`clip.mp4` with `clip.wav`).

Each line holds AudioCraft's `AudioMeta` fields plus `video_path`. Unusable files are skipped and listed with
the reason (also in `egs/<name>/skipped.txt`). A `config/dset/<name>.yaml` is written so that training can use
`dset=<name>`.

    python -m audiocraft_ext.data.build_manifest --videos my_videos --name mydata
"""

import argparse
import logging
from pathlib import Path
import sys
import typing as tp

from audiocraft.data.audio import audio_info
import torch
from tqdm import tqdm

from ..environment import CONFIG_DIR
from ..media.audio import align_audio, read_audio_track, write_wav
from ..media.extensions import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, find_media
from ..media.video import VideoReadError, probe_video
from .video_dataset import VideoAudioMeta, save_video_audio_meta

logger = logging.getLogger(__name__)


def remove_vocals(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Keep the accompaniment of `[C, N]` audio: every demucs (htdemucs) source but the vocals."""
    try:
        from demucs.apply import apply_model
        from demucs.pretrained import get_model
    except ImportError:
        raise RuntimeError("vocal removal needs demucs: pip install demucs") from None
    from audiocraft.data.audio_utils import convert_audio
    try:
        model = get_model("htdemucs")
    except Exception as err:
        raise RuntimeError(f"demucs could not load its 'htdemucs' weights ({err}); they are downloaded on first "
                           "use into the torch hub cache") from None
    mix = convert_audio(wav, sample_rate, model.samplerate, model.audio_channels)
    sources = apply_model(model, mix[None], progress=False)[0]
    accompaniment = sum(s for name, s in zip(model.sources, sources) if name != "vocals")
    return convert_audio(accompaniment, model.samplerate, sample_rate, wav.shape[0])  # type: ignore[arg-type]


def _pair_audio(video: Path, audio_dir: Path) -> Path:
    for ext in AUDIO_EXTENSIONS:
        candidate = audio_dir / f"{video.stem}{ext}"
        if candidate.is_file():
            return candidate
    raise VideoReadError(video, f"no audio file named {video.stem}.* in {audio_dir}")


def build_manifest(videos: Path, name: str, egs_dir: Path = Path("egs"), audio_dir: tp.Optional[Path] = None,
                   sample_rate: int = 32000, channels: int = 1, vocals: bool = True, min_duration: float = 1.0,
                   dset_dir: tp.Optional[Path] = CONFIG_DIR / "dset", progress: bool = True
                   ) -> tp.Tuple[Path, tp.List[VideoAudioMeta], tp.List[tp.Tuple[Path, str]]]:
    """Write `egs_dir/name/data.jsonl`; returns its path, the entries and the skipped files with reasons."""
    out_dir = egs_dir / name
    entries: tp.List[VideoAudioMeta] = []
    skipped: tp.List[tp.Tuple[Path, str]] = []
    for video in tqdm(find_media(videos, VIDEO_EXTENSIONS), desc="videos", disable=not progress):
        try:
            info = probe_video(video)
            if audio_dir is not None:
                audio_path = _pair_audio(video, audio_dir)
            else:
                if not info.has_audio:
                    raise VideoReadError(video, "no audio track (pass --audio DIR to pair audio files)")
                wav, start = read_audio_track(video, sample_rate, channels)
                # the music of the video's span exactly: aligned to its first frame, cut to its duration
                wav = align_audio(wav, start - info.start_time, sample_rate, round(info.duration * sample_rate))
                if not vocals:
                    wav = remove_vocals(wav, sample_rate)
                audio_path = write_wav(out_dir / "audio" / f"{video.stem}.wav", wav, sample_rate)
            details = audio_info(str(audio_path))
            if details.duration < min_duration:
                raise VideoReadError(video, f"music shorter than {min_duration} s ({details.duration:.2f} s)")
            entries.append(VideoAudioMeta(path=str(Path(audio_path).resolve()), duration=details.duration,
                                          sample_rate=details.sample_rate, video_path=str(video.resolve())))
        except VideoReadError as err:
            skipped.append((video, err.reason))
        except RuntimeError as err:
            skipped.append((video, str(err)))
    manifest = out_dir / "data.jsonl"
    save_video_audio_meta(manifest, entries)
    (out_dir / "skipped.txt").write_text("".join(f"{path}\t{reason}\n" for path, reason in skipped))
    if dset_dir is not None:
        dset_dir.mkdir(parents=True, exist_ok=True)
        folder = manifest.parent.resolve()
        if folder.is_relative_to(Path.cwd()):  # relative to the repository: Dora resolves it from its clone
            folder = folder.relative_to(Path.cwd())
        (dset_dir / f"{name}.yaml").write_text(
            "# @package __global__\n# written by audiocraft_ext.data.build_manifest\n"
            f"datasource:\n  max_sample_rate: {sample_rate}\n  max_channels: {channels}\n"
            + "".join(f"  {split}: {folder}\n" for split in ("train", "valid", "evaluate", "generate")))
    return manifest, entries, skipped


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", required=True, type=Path, help="folder of videos")
    parser.add_argument("--audio", type=Path, default=None, help="folder of audio files paired by stem")
    parser.add_argument("--name", required=True, help="dataset name: egs/<name>/data.jsonl, dset=<name>")
    parser.add_argument("--egs_dir", type=Path, default=Path("egs"))
    parser.add_argument("--sample_rate", type=int, default=32000, help="rate of extracted audio tracks")
    parser.add_argument("--remove_vocals", action="store_true", help="keep only the accompaniment (demucs)")
    parser.add_argument("--min_duration", type=float, default=1.0, help="skip shorter music (s)")
    parser.add_argument("--dset_dir", default=str(CONFIG_DIR / "dset"),
                        help="where to write the dset/<name>.yaml config ('' to skip)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if not args.videos.is_dir():
        print(f"not a folder: {args.videos}", file=sys.stderr)
        return 2
    manifest, entries, skipped = build_manifest(
        args.videos, args.name, args.egs_dir, args.audio, args.sample_rate, vocals=not args.remove_vocals,
        min_duration=args.min_duration, dset_dir=Path(args.dset_dir) if args.dset_dir else None)
    print(f"{manifest}: {len(entries)} pairs, {sum(e.duration for e in entries) / 3600:.2f} h; "
          f"skipped {len(skipped)}")
    for path, reason in skipped:
        print(f"  skipped: {path}: {reason}")
    return 0 if entries else 1


if __name__ == "__main__":
    sys.exit(main())
