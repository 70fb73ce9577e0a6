"""Which of my tracks fits this video? Rank the audio files of a folder for a video or an image.

Score of a track = the model's mean log-likelihood of a window of the track's codec tokens given the video, minus
the same given the null (black) video: how much the video explains the music (scored in chunks of the model's
generation window). By default only the first codebook is scored: it holds the coarse content a picture can
explain (notes, onsets), while the finer codebooks' detail adds noise to the score (on the synthetic corpus's
validation pairs, retrieval R@1 was 0.50 with the first codebook against 0.19 with all four). Tracks are
encoded to tokens once and cached on disk (`<library>/.audiocraft_ext_tokens/`, refreshed when a file changes).

    python -m audiocraft_ext.recommend --library my_music --video clip.mp4 --top 5
    python -m audiocraft_ext.recommend --library my_music --image photo.jpg --json
"""

import argparse
import hashlib
import json
import logging
from pathlib import Path
import sys
import typing as tp
import warnings

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_utils import convert_audio
import torch
from tqdm import tqdm

from .data.feature_cache import module_fingerprint
from .data.video import VideoFrames, VideoReadError, num_local_frames
from .models.lm import VideoBatch, mean_token_log_likelihood
from .models.loaders import ModelFilesMissing
from .models.vidmuse import VidMuse
from .utils.atomic import atomic_output

logger = logging.getLogger(__name__)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")
CACHE_FOLDER = ".audiocraft_ext_tokens"


@torch.no_grad()
def encode_audio(model: VidMuse, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Codec tokens `[K, T]` (int16, on CPU) of audio `[C, N]` at `sample_rate` (converted to the model's)."""
    wav = convert_audio(wav, sample_rate, model.sample_rate, model.audio_channels)
    codes, _ = model.compression_model.encode(wav[None].to(model.device))
    return codes[0].cpu().short()


class TrackTokenCache:
    """Codec tokens `[K, T]` of audio files, stored per file in `folder`, keyed by path, size, mtime and codec."""

    def __init__(self, model: VidMuse, folder: Path):
        self.model = model
        self.folder = folder
        self.codec = module_fingerprint(model.compression_model)

    def _path(self, track: Path) -> Path:
        stat = track.stat()
        key = json.dumps([str(track.resolve()), stat.st_size, stat.st_mtime_ns, self.codec])
        return self.folder / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"

    @torch.no_grad()
    def tokens(self, track: Path) -> torch.Tensor:
        path = self._path(track)
        if path.exists():
            return torch.load(path, map_location="cpu", weights_only=True)
        codes = encode_audio(self.model, *audio_read(track))
        with atomic_output(path) as tmp:
            torch.save(codes, tmp)
        return codes


@torch.no_grad()
def mean_log_likelihood(model: VidMuse, codes: torch.Tensor, conditions: dict,
                        codebooks: tp.Optional[int] = None) -> torch.Tensor:
    """Mean log-probability of codes `[B, K, T]` under the LM with `conditions`, over the valid positions of the
    first `codebooks` codebooks (None: all): `[B]`."""
    codes = codes.long().to(model.device)
    out = model.lm.compute_predictions(codes, [], condition_tensors=conditions)
    mask = out.mask.clone()
    if codebooks is not None:
        mask[:, codebooks:] = False
    return mean_token_log_likelihood(out.logits, codes, mask)


@torch.no_grad()
def score_tracks(model: VidMuse, frames: VideoFrames, tracks: tp.Sequence[torch.Tensor], window: float = 10.0,
                 batch_size: int = 8, codebooks: tp.Optional[int] = 1) -> tp.List[float]:
    """Scores of token sequences `[K, T]` for a video: log-likelihood given the video minus given the null video,
    per token of the first `codebooks` codebooks (None: all), on the first `window` seconds (or less: the
    video's or the track's length).

    A span longer than the model's generation window is scored in consecutive chunks of that window (the model
    was never trained on longer ones), each with the local frames of its own span, as generation pairs them;
    the chunks' scores are averaged, weighted by their length.
    """
    rate = model.frame_rate
    scored_tokens = int(min(window, frames.duration) * rate)
    chunk_tokens = int(model.max_duration * rate)
    chunks: tp.Dict[tp.Tuple[int, int], tp.List[int]] = {}  # (start, length) -> tracks with that chunk
    for index, codes in enumerate(tracks):
        length = min(scored_tokens, codes.shape[-1])
        for start in range(0, length, chunk_tokens):
            chunks.setdefault((start, min(chunk_tokens, length - start)), []).append(index)
    totals, weights = [0.0] * len(tracks), [0] * len(tracks)
    for (start, length), indices in chunks.items():
        local = frames.local_window(round(start / rate * frames.local_fps),
                                    num_local_frames(length / rate, frames.local_fps))
        video = VideoBatch(local[None], frames.global_frames[None])
        null = video.null()
        for first in range(0, len(indices), batch_size):
            batch = indices[first:first + batch_size]
            codes = torch.stack([tracks[i][:, start:start + length] for i in batch])
            n = len(batch)
            repeat = lambda b: VideoBatch(b.local_frames.expand(n, -1, -1, -1, -1),  # noqa: E731
                                          b.global_frames.expand(n, -1, -1, -1, -1))
            conditional = mean_log_likelihood(model, codes, model.lm.compute_video_condition(repeat(video)), codebooks)
            unconditional = mean_log_likelihood(model, codes, model.lm.compute_video_condition(repeat(null)),
                                                codebooks)
            for i, value in zip(batch, (conditional - unconditional).tolist()):
                totals[i] += value * length
                weights[i] += length
    return [total / weight for total, weight in zip(totals, weights)]


def add_codebooks_argument(parser: argparse.ArgumentParser) -> None:
    """The `--codebooks` option of the recommendation score (shared by recommend and evaluate)."""
    parser.add_argument("--codebooks", type=lambda value: int(value) or None, default=1,
                        help="score the first N codebooks (0: all); the first holds what a picture explains")


def load_query(model: VidMuse, video: tp.Optional[Path], image: tp.Optional[Path], window: float) -> VideoFrames:
    """The query's frames: the video, or the image as a still video of `window` seconds."""
    if image is not None:
        return model.load_image(image, window)
    assert video is not None
    return model.load_video(video)


def recommend(model: VidMuse, library: Path, frames: VideoFrames, window: float = 10.0, batch_size: int = 8,
              cache_dir: tp.Optional[Path] = None, progress: bool = False, codebooks: tp.Optional[int] = 1
              ) -> tp.List[tp.Dict[str, tp.Any]]:
    """Rank the audio files of `library` for `frames`: `[{'path', 'score'}, ...]`, best first. Unreadable files
    are left out (with a warning)."""
    cache = TrackTokenCache(model, cache_dir or library / CACHE_FOLDER)
    paths = sorted(p for p in library.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    kept, tokens = [], []
    for path in tqdm(paths, desc="tracks", disable=not progress):
        try:
            tokens.append(cache.tokens(path))
            kept.append(path)
        except Exception as err:  # a corrupt track must not stop the ranking
            logger.warning("%s: cannot read (%s); left out", path, err)
    scores = score_tracks(model, frames, tokens, window, batch_size, codebooks)
    ranked = sorted(zip(kept, scores), key=lambda item: item[1], reverse=True)
    return [{"path": str(path), "score": score} for path, score in ranked]


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiocraft_ext.recommend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, required=True, help="folder of audio files")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--video", type=Path)
    query.add_argument("--image", type=Path)
    parser.add_argument("--top", type=int, default=10, help="how many tracks to show")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {path, score}, best first")
    parser.add_argument("--model_path", default="./model")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each track (and video) scored")
    parser.add_argument("--batch_size", type=int, default=8)
    add_codebooks_argument(parser)
    parser.add_argument("--cache_dir", type=Path, default=None, help=f"default: <library>/{CACHE_FOLDER}")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore")
    if not args.library.is_dir():
        print(f"not a folder: {args.library}", file=sys.stderr)
        return 2
    try:
        model = VidMuse.get_pretrained(args.model_path, device=args.device)
        frames = load_query(model, args.video, args.image, args.window)
    except (ModelFilesMissing, VideoReadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ranking = recommend(model, args.library, frames, args.window, args.batch_size, args.cache_dir,
                        progress=not args.json, codebooks=args.codebooks)[:args.top]
    if args.json:
        print(json.dumps(ranking, indent=2))
    else:
        for rank, item in enumerate(ranking, 1):
            print(f"{rank:3d}. {item['score']:+.4f}  {item['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
