"""Music for a folder of videos (and images): `python -m audiocraft_ext.infer` (what `infer.sh` runs).

    python -m audiocraft_ext.infer --model_path ./model --video_dir ./dataset/example/infer --output_dir ./result/

Exit status: 0 when every input was done or skipped, 1 when any input failed (the others are still processed),
2 when the run cannot start (a model that cannot be loaded, bad folders, bad arguments).
"""

import argparse
import logging
from pathlib import Path
import sys
import typing as tp

from .media.beat_sync import DEFAULT_MAX_TEMPO_CHANGE
from .media.extensions import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, find_media
from .media.mux import ORIGINAL_AUDIO_MODES
from .media.video import RESIZE_MODES
from .models.cli import add_model_arguments, load_model_from_args, setup_logging
from .pipeline import GenerationSettings, run

logger = logging.getLogger("audiocraft_ext.infer")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m audiocraft_ext.infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--video_dir", default="./dataset/example/infer", help="folder of input videos / images")
    parser.add_argument("--output_dir", default="./result/", help="where the wav, mp4 and json files go")
    parser.add_argument("--topk", type=int, default=250, help="top-k sampling (0: off)")
    parser.add_argument("--topp", type=float, default=0.0, help="top-p sampling (0: off; overrides top-k)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--cfg_coef", type=float, default=3.0, help="classifier-free guidance coefficient")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: a random one, recorded "
                        "in each sidecar)")
    parser.add_argument("--batch_size", type=int, default=1, help="videos generated together")
    parser.add_argument("--max_duration", type=float, default=None,
                        help="music for at most this many seconds of each video (the mp4 is cut to it)")
    parser.add_argument("--image_duration", type=float, default=10.0, help="seconds of music for an image")
    parser.add_argument("--original_audio", choices=ORIGINAL_AUDIO_MODES, default="drop",
                        help="the input's own audio: drop it, keep it as a second track, or mix it in")
    parser.add_argument("--original_volume", type=float, default=0.5, help="gain of the original audio for mix")
    parser.add_argument("--resize_mode", choices=RESIZE_MODES, default="squash",
                        help="how frames become 224x224: squash (as the official weights were trained) or crop")
    parser.add_argument("--description", default=None,
                        help="text steering the music with the picture (models with a text conditioner)")
    parser.add_argument("--sync_cuts", action="store_true",
                        help="move the music's beats onto the video's scene cuts (small local time-stretches; "
                        "same length; recorded in the sidecar)")
    parser.add_argument("--max_tempo_change", type=float, default=DEFAULT_MAX_TEMPO_CHANGE,
                        help="largest local tempo change --sync_cuts may make (0.15: within ±15%%)")
    parser.add_argument("--extensions", default=",".join(e.lstrip(".") for e in VIDEO_EXTENSIONS),
                        help="video file extensions to process")
    parser.add_argument("--overwrite", action="store_true", help="regenerate inputs whose outputs exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    video_dir, output_dir = Path(args.video_dir), Path(args.output_dir)
    if not video_dir.is_dir():
        logger.error("video folder not found: %s", video_dir)
        return 2
    if output_dir.resolve() == video_dir.resolve():
        logger.error("the output folder must differ from the input folder (%s): outputs share the inputs' names",
                     video_dir)
        return 2
    try:
        settings = GenerationSettings(top_k=args.topk, top_p=args.topp, temperature=args.temperature,
                                      cfg_coef=args.cfg_coef, seed=args.seed, max_duration=args.max_duration,
                                      image_duration=args.image_duration, original_audio=args.original_audio,
                                      original_volume=args.original_volume, resize_mode=args.resize_mode,
                                      description=args.description, sync_cuts=args.sync_cuts,
                                      max_tempo_change=args.max_tempo_change)
        if args.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
    except ValueError as err:
        logger.error("%s", err)
        return 2
    inputs = find_media(video_dir, [*(e.strip() for e in args.extensions.split(",") if e.strip()),
                                    *IMAGE_EXTENSIONS])
    if not inputs:
        logger.error("no videos or images in %s", video_dir)
        return 2
    loaded = load_model_from_args(args)
    model = loaded.model
    if settings.description and not model.lm.has_text_conditioner:
        logger.error("--description: this model has no text conditioner")
        return 2
    logger.info("model %s on %s; %d input(s) from %s", args.model_path, model.device, len(inputs), video_dir)
    summary = run(model, inputs, output_dir, settings, batch_size=args.batch_size, overwrite=args.overwrite,
                  model_checksum=loaded.checksum, progress=not args.quiet)
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
