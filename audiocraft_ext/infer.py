"""Music for a folder of videos (and images): `python -m audiocraft_ext.infer` (what `infer.sh` runs).

    python -m audiocraft_ext.infer --model_path ./model --video_dir ./dataset/example/infer --output_dir ./result/

Several workers split the sorted inputs round-robin (input k goes to shard k mod N; see `utils.shards`):
`--num_shards N --shard_index i` runs shard i only (e.g. one task of a SLURM array job per shard, on a shared
output folder), and `--nproc_per_node M` runs M processes here (one GPU each when there are GPUs; the CPU
threads divided between them otherwise) and prints one summary for all of them.

Exit status: 0 when every input was done or skipped, 1 when any input failed (the others are still processed),
2 when the run cannot start (a model that cannot be loaded, bad folders, bad arguments).
"""

import argparse
import logging
import multiprocessing
from pathlib import Path
import pickle
import sys
import tempfile
import typing as tp

import torch

from .media.beat_sync import DEFAULT_MAX_TEMPO_CHANGE
from .media.extensions import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, find_media
from .media.mux import ORIGINAL_AUDIO_MODES
from .media.video import RESIZE_MODES
from .models.cli import add_model_arguments, load_model, setup_logging
from .models.vidmuse import draw_seed
from .pipeline import GenerationSettings, RunSummary, run
from .utils.shards import check_shard, shard

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
    parser.add_argument("--cfg_coef_beta", type=float, default=None,
                        help="double guidance for a model with music descriptors: what the picture adds to the "
                             "descriptors is guided by cfg_coef x this (1: plain guidance; default: the model's)")
    parser.add_argument("--rerank_candidates", type=int, default=None,
                        help="for a model with music descriptors: draws per input, the one whose tempo and register "
                             "are nearest those read from the video kept (time and memory grow with it: the LM's "
                             "batch is batch_size x this; default: the model's)")
    parser.add_argument("--onset_rate", type=float, default=None,
                        help="for a model with music descriptors: the music's onsets per second, instead of the rate "
                             "read from each picture (e.g. 1.5: calm, 6: busy; within the model's range)")
    parser.add_argument("--register_hz", type=float, default=None,
                        help="for a model with music descriptors: the music's register in Hz (the power-weighted "
                             "mean of log frequency over 50-1000 Hz), instead of the one read from each picture")
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
    group = parser.add_argument_group("several workers (inputs split round-robin over the sorted list)")
    group.add_argument("--num_shards", type=int, default=1, help="split the inputs into this many shards")
    group.add_argument("--shard_index", type=int, default=0, help="the shard to run (0 .. num_shards - 1)")
    group.add_argument("--nproc_per_node", type=int, default=1,
                       help="processes on this machine, each running its share of the shard (infer.sh: "
                       "$NPROC_PER_NODE); one GPU each when there are GPUs")
    return parser


def settings_from_args(args: argparse.Namespace) -> GenerationSettings:
    """The generation settings of the flags; `ValueError` (one line) for a bad value or a bad worker split."""
    settings = GenerationSettings(top_k=args.topk, top_p=args.topp, temperature=args.temperature,
                                  cfg_coef=args.cfg_coef, cfg_coef_beta=args.cfg_coef_beta,
                                  rerank_candidates=args.rerank_candidates, seed=args.seed,
                                  max_duration=args.max_duration,
                                  image_duration=args.image_duration, original_audio=args.original_audio,
                                  original_volume=args.original_volume, resize_mode=args.resize_mode,
                                  description=args.description, onset_rate=args.onset_rate,
                                  register_hz=args.register_hz, sync_cuts=args.sync_cuts,
                                  max_tempo_change=args.max_tempo_change)
    if args.batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    check_shard(args.num_shards, args.shard_index)
    if args.nproc_per_node < 1:
        raise ValueError(f"nproc_per_node must be at least 1 (got {args.nproc_per_node})")
    return settings


class CannotStart(Exception):
    """The run cannot start (exit status 2); the message is the one line that says why."""


def generate_share(args: argparse.Namespace, settings: GenerationSettings, inputs: tp.Sequence[Path],
                   num_shards: int, shard_index: int, device: str, progress: bool) -> RunSummary:
    """Load the model on `device` and make music for shard `shard_index` of `num_shards` of `inputs`.
    A model that cannot be loaded ends the process with one line, status 2 (`models.cli.load_model`); one that
    cannot take the description or the reranking raises `CannotStart`."""
    if not shard(inputs, num_shards, shard_index):
        logger.info("shard %d of %d: no inputs (%d in all)", shard_index, num_shards, len(inputs))
        return RunSummary()
    loaded = load_model(args.model_path, device, args.dtype, args.clip_num_heads)
    model = loaded.model
    try:
        settings.check_for(model)
    except ValueError as error:
        raise CannotStart(str(error)) from None
    share = f"shard {shard_index} of {num_shards} of " if num_shards > 1 else ""
    logger.info("model %s on %s; %s%d input(s) from %s", args.model_path, model.device, share, len(inputs),
                args.video_dir)
    return run(model, inputs, Path(args.output_dir), settings, batch_size=args.batch_size,
               overwrite=args.overwrite, model_checksum=loaded.checksum, progress=progress,
               num_shards=num_shards, shard_index=shard_index)


def _worker(local_rank: int, args: argparse.Namespace, settings: GenerationSettings, inputs: tp.List[Path],
            device: str, threads: int, result: Path) -> None:
    """One of `--nproc_per_node` processes: its part of the shard, its summary pickled to `result`."""
    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    torch.set_num_threads(threads)
    nproc = args.nproc_per_node
    try:
        summary = generate_share(args, settings, inputs, args.num_shards * nproc,
                                 args.shard_index + args.num_shards * local_rank, device,
                                 progress=not args.quiet and local_rank == 0)
    except CannotStart as err:
        logger.error("%s", err)
        raise SystemExit(2) from None
    with open(result, "wb") as f:
        pickle.dump(summary, f)


def worker_devices(device: str, nproc: int) -> tp.List[str]:
    """The device of each local process: one GPU each (round-robin over the visible GPUs) for `auto` or `cuda`
    when there are GPUs, else `device` for all."""
    count = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if not count:
        return [device] * nproc
    if nproc > count:
        logger.warning("%d processes share %d GPU(s)", nproc, count)
    return [f"cuda:{rank % count}" for rank in range(nproc)]


def run_local_workers(args: argparse.Namespace, settings: GenerationSettings, inputs: tp.List[Path]
                      ) -> tp.Tuple[RunSummary, int]:
    """Run `--nproc_per_node` processes on this machine, each on its share of the shard, with one seed for all
    and the CPU threads divided between them. Returns the combined summary (inputs in their sorted order) and
    the worst exit status of the processes (0 when all finished)."""
    nproc = args.nproc_per_node
    if settings.seed is None:  # one run, one seed (recorded in every sidecar)
        settings.seed = draw_seed()
    threads = max(1, torch.get_num_threads() // nproc)
    devices = worker_devices(args.device, nproc)
    logger.info("%d processes (%s), %d CPU thread(s) each", nproc, ", ".join(devices), threads)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    combined, status = RunSummary(), 0
    with tempfile.TemporaryDirectory(prefix="infer_workers_") as folder:
        results = [Path(folder) / f"{rank}.pkl" for rank in range(nproc)]
        processes = [context.Process(target=_worker, args=(rank, args, settings, inputs, devices[rank], threads,
                                                           results[rank])) for rank in range(nproc)]
        for process in processes:
            process.start()
        for rank, (process, result) in enumerate(zip(processes, results)):
            process.join()
            if process.exitcode != 0 or not result.exists():
                if process.exitcode != 2:  # 2: it has said why on its own line
                    logger.error("process %d stopped with status %s before finishing its inputs (a rerun does "
                                 "the rest)", rank, process.exitcode)
                status = max(status, 2 if process.exitcode == 2 else 1)
                continue
            with open(result, "rb") as f:
                summary: RunSummary = pickle.load(f)
            combined.done += summary.done
            combined.skipped += summary.skipped
            combined.failed += summary.failed
    order = {path: index for index, path in enumerate(inputs)}
    combined.done.sort(key=order.__getitem__)
    combined.skipped.sort(key=order.__getitem__)
    combined.failed.sort(key=lambda item: order[item[0]])
    return combined, status


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
        settings = settings_from_args(args)
    except ValueError as err:
        logger.error("%s", err)
        return 2
    inputs = find_media(video_dir, [*(e.strip() for e in args.extensions.split(",") if e.strip()),
                                    *IMAGE_EXTENSIONS])
    if not inputs:
        logger.error("no videos or images in %s", video_dir)
        return 2
    if args.nproc_per_node > 1:
        summary, status = run_local_workers(args, settings, inputs)
        if status == 2 and not (summary.done or summary.skipped or summary.failed):
            return 2  # no process could start (each said why)
    else:
        try:
            summary, status = generate_share(args, settings, inputs, args.num_shards, args.shard_index,
                                             args.device, progress=not args.quiet), 0
        except CannotStart as err:
            logger.error("%s", err)
            return 2
    for line in summary.lines():
        print(line)
    return 1 if summary.failed or status else 0


if __name__ == "__main__":
    sys.exit(main())
