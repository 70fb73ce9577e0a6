"""Quality of every reduced weight format against float32, on the same weights (see `models/format_quality.py`).

For each model, the float32 LM samples a 10 s window of codes for a video (seed 0); then for each format:
- mean KL per token of the CFG-guided next-token distributions, KL(float32 || format), teacher-forced on those
  codes along the generation path;
- top-1 agreement of those distributions;
- greedy-code agreement over the window.
Formats: bfloat16 and int8 weights (each with the loader's default cache formats: bfloat16 video-memory keys/values
and self-attention cache), int8 with float32 caches, and float32 weights with bfloat16 caches (the caches alone).

Models: a random-weight medium-shaped LM written in the release's layout (`--scale`), the official-code parity
fixture (`tests/fixtures/vidmuse_official_tiny`) and the model shipped in `model/` (trained on the synthetic
corpus, the only trained weights here), on one of the example videos.

    python benchmarks/format_quality.py --scale medium --json quality.json
"""

import argparse
import json
from pathlib import Path
import time
import typing as tp
import warnings

import torch

from audiocraft_ext.media.video import load_video_frames
from audiocraft_ext.models.format_quality import compare_formats, greedy_codes
from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.models.loaders import load_lm_model

from random_checkpoint import random_checkpoint, random_video

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "vidmuse_official_tiny"
# (label, weight dtype, video-memory K/V dtype, self-attention cache dtype); None: the loader's default, which is
# bfloat16 for both with int8 and bfloat16 weights and the computation's dtype with float32 weights
FORMATS = [("bfloat16", "bfloat16", None, None),
           ("int8", "int8", None, None),
           ("int8 + float32 caches", "int8", torch.float32, torch.float32),
           ("float32 + bfloat16 caches", "float32", torch.bfloat16, torch.bfloat16)]


def measure_model(name: str, folder: Path, video: VideoBatch, seconds: float, formats: tp.Sequence[str],
                  clip_num_heads: tp.Optional[int] = None) -> tp.Dict[str, tp.Dict[str, float]]:
    """The figures of every format for the checkpoint in `folder` on `video`."""
    reference = load_lm_model(folder, dtype="float32", clip_num_heads=clip_num_heads)
    steps = int(seconds * 50)
    conditions = reference.compute_video_condition(video, with_null=True)
    codes = reference.generate(cfg_condition_tensors=conditions, max_gen_len=steps, use_sampling=True, top_k=250,
                               cfg_coef=3.0, generators=[torch.Generator().manual_seed(0)])
    reference_greedy = greedy_codes(reference, conditions, steps)
    results = {}
    for label, dtype, memory_dtype, cache_dtype in FORMATS:
        if label not in formats:
            continue
        start = time.perf_counter()
        candidate = load_lm_model(folder, dtype=dtype, clip_num_heads=clip_num_heads)
        defaults = candidate.decoding_formats()  # the loader's choice for this dtype
        candidate.set_decoding_formats(memory_dtype=memory_dtype or defaults[0],
                                       kv_cache_dtype=cache_dtype or defaults[1])
        quality = compare_formats(reference, candidate, conditions, codes, steps, reference_greedy=reference_greedy)
        results[label] = quality.to_dict()
        print(f"{name:>34} | {label:<30} | KL/token {quality.kl_per_token:.2e} | top-1 {quality.top1_agreement:.3f} "
              f"| greedy codes {quality.greedy_agreement:.3f} | {time.perf_counter() - start:.0f} s", flush=True)
        del candidate
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["small", "medium", "none"], default="medium",
                        help="random-weight LM shape to measure (none: only the fixture and the shipped model)")
    parser.add_argument("--layers", type=int, default=None, help="fewer transformer layers (quick runs)")
    parser.add_argument("--seconds", type=float, default=10.0, help="window to score and decode")
    parser.add_argument("--formats", default=",".join(label for label, *_ in FORMATS),
                        help="comma-separated labels of the formats to measure (default: all)")
    parser.add_argument("--random_formats", default=None,
                        help="formats for the random-weight LM (default: --formats; medium float32 is slow here)")
    parser.add_argument("--checkpoint_dir", type=Path, default=None,
                        help="where to write (or find) the random checkpoint and keep it; default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    formats = args.formats.split(",")
    unknown = set(formats) - {label for label, *_ in FORMATS}
    if unknown:
        parser.error(f"unknown formats: {', '.join(sorted(unknown))}")
    figures = {}
    fixture_inputs = torch.load(FIXTURE / "inputs.pt", weights_only=True)
    clip_heads = json.loads((FIXTURE / "tiny_arch.json").read_text())["clip_vision_config"]["num_attention_heads"]
    figures["parity fixture"] = measure_model(
        "parity fixture (tiny, random)", FIXTURE,
        VideoBatch(fixture_inputs["local_frames"], fixture_inputs["global_frames"]),
        float(fixture_inputs["seconds"]), formats, clip_num_heads=clip_heads)
    frames = load_video_frames(ROOT / "dataset" / "example" / "infer" / "shapes_with_cut.mp4", duration=args.seconds)
    figures["shipped model"] = measure_model(
        "model/ (compact, trained)", ROOT / "model",
        VideoBatch(frames.local_frames[None], frames.global_frames[None]), args.seconds, formats)
    if args.scale != "none":
        with random_checkpoint(args.scale, args.layers, args.checkpoint_dir) as folder:
            figures[f"{args.scale} random"] = measure_model(
                f"{args.scale} (random weights)", folder, random_video(int(args.seconds * 2), 32), args.seconds,
                (args.random_formats or args.formats).split(","))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
