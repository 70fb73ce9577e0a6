"""Which of my tracks fits this video? Rank the audio files of a folder for a video or an image.

A track's score is how much the video raises the model's likelihood of the track (`audiocraft_ext.models.scoring`:
conditional minus null-video log-likelihood, on the first codebook by default). Tracks are encoded to tokens once
and cached on disk (`<library>/.audiocraft_ext_tokens/`, refreshed when a file changes).

    python -m audiocraft_ext.recommend --library my_music --video clip.mp4 --top 5
    python -m audiocraft_ext.recommend --library my_music --image photo.jpg --json
"""

import argparse
import json
import logging
from pathlib import Path
import sys
import typing as tp

from tqdm import tqdm

from .media.extensions import AUDIO_EXTENSIONS, find_media
from .media.video import VideoFrames, VideoReadError
from .models.cli import add_codebooks_argument, add_model_arguments, load_model_from_args, setup_logging
from .models.scoring import TOKEN_CACHE_FOLDER, TrackTokenCache, score_tracks
from .models.vidmuse import VidMuse

logger = logging.getLogger(__name__)


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
    cache = TrackTokenCache(model, cache_dir or library / TOKEN_CACHE_FOLDER)
    kept, tokens = [], []
    for path in tqdm(find_media(library, AUDIO_EXTENSIONS), desc="tracks", disable=not progress):
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
    add_model_arguments(parser)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of each track (and video) scored")
    parser.add_argument("--batch_size", type=int, default=8)
    add_codebooks_argument(parser)
    parser.add_argument("--cache_dir", type=Path, default=None, help=f"default: <library>/{TOKEN_CACHE_FOLDER}")
    args = parser.parse_args(argv)
    setup_logging(logging.WARNING)
    if not args.library.is_dir():
        print(f"error: not a folder: {args.library}", file=sys.stderr)
        return 2
    model = load_model_from_args(args).model
    try:
        frames = load_query(model, args.video, args.image, args.window)
    except VideoReadError as err:
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
