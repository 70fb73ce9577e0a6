"""Export a trained VidMuse into a checkpoint folder that `infer.sh` and `VidMuse.get_pretrained` load.

    python -m audiocraft_ext.export --sig 1188fb8b --out ./model
    python -m audiocraft_ext.export --sig 1188fb8b --out ./model --lm_dtype float16     # half the LM's size
    python -m audiocraft_ext.export --checkpoint output/vidmuse/xps/1188fb8b/checkpoint.th --out ./model \
        --compression facebook/encodec_32khz
    python -m audiocraft_ext.export --sig 1188fb8b --out ./model \
        --compression output/vidmuse/xps/<codec sig>/checkpoint.th
"""

import argparse
import logging
from pathlib import Path
import sys
import typing as tp

import torch

from .environment import xp_checkpoint
from .models.cli import load_model, setup_logging
from .models.export import export_xp_checkpoint


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiocraft_ext.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sig", help="Dora signature of the training run (its checkpoint.th is exported)")
    source.add_argument("--checkpoint", type=Path, help="path of a training checkpoint.th")
    parser.add_argument("--out", type=Path, required=True, help="output checkpoint folder")
    parser.add_argument("--compression", default=None,
                        help="codec to ship instead of the run's compression_model_checkpoint (a name for a "
                             "pointer, e.g. facebook/encodec_32khz, a compression_state_dict.bin, or the "
                             "checkpoint.th of a codec training run)")
    parser.add_argument("--lm_dtype", choices=("float32", "float16"), default="float32",
                        help="storage format of the LM's weights outside its video encoder (float16: half the "
                             "size; loading casts them to the format asked for)")
    parser.add_argument("--cfg_coef_beta", type=float, default=None,
                        help="for a model with music descriptors: its default double guidance (the picture guided "
                             "beyond the descriptors by cfg_coef x this; default: the run's config)")
    parser.add_argument("--rerank_candidates", type=int, default=None,
                        help="for a model with music descriptors: its default draws per video, the one nearest the "
                             "descriptors read from the video kept (default: the run's config, else 1)")
    parser.add_argument("--check", action="store_true", help="load the exported folder to check it")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    checkpoint = xp_checkpoint(args.sig) if args.sig else args.checkpoint
    if not checkpoint.is_file():
        print(f"error: no checkpoint at {checkpoint}", file=sys.stderr)
        return 2
    try:
        out = export_xp_checkpoint(checkpoint, args.out, args.compression, getattr(torch, args.lm_dtype),
                                   args.cfg_coef_beta, args.rerank_candidates)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {checkpoint} -> {out}")
    if args.check:
        model = load_model(out, device="cpu").model
        print(f"loaded: {sum(p.numel() for p in model.lm.parameters()) / 1e6:.1f} M LM parameters, codec "
              f"{model.sample_rate} Hz, {model.compression_model.num_codebooks} codebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
