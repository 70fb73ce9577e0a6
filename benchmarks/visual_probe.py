"""Can a linear read-out recover brightness and speed from a model's CLIP tokens, on a look it was not fitted on?

A measurement for choosing a vision tower (model card, "On the corpus's second edition"): the tower is frozen,
so what it does not carry about a picture no training above it can recover. For each clip of the synthetic
corpus (`egs/synth`, several looks; `attributes.jsonl` holds the knobs), the model's CLIP tower encodes the frames
as the model samples them, and their `token_statistics` (what a model built with `music_descriptors` reads its
music's tempo and register from) are kept in two halves:
- of the global frames: the mean and standard deviation of every token dimension (for brightness);
- of the changes between consecutive local frames (`frame_changes`, what the model's motion features read): the
  log of the mean and standard deviation of their absolute values per dimension (for speed).
Ridge regressions fitted on every look but one predict the left-out look's brightness and speed; the script prints
Spearman's rho per left-out look (`--held_out` adds a corpus of looks never used for fitting, e.g. the evaluation's
`bokeh`), next to the same read-out fitted and tested within each look (a look's ceiling, 5-fold). The same
read-outs of the frames' pixels (each patch's mean colour as a token) are the baseline, measured in the same run:
a tower that reads worse than its pixels loses what the picture shows. `--local_fps` samples the local frames at
another rate than the model's, to measure what denser frames would carry about motion.

    python benchmarks/visual_probe.py --model_path model --corpus egs/synth/train --held_out egs/synth/test_bokeh
    python benchmarks/visual_probe.py --model_path model --corpus egs/synth/train --held_out egs/synth/test_bokeh \
        --local_fps 4
"""

import argparse
from collections import defaultdict
from pathlib import Path
import typing as tp
import warnings

from scipy.stats import spearmanr
import torch
from tqdm import tqdm

from audiocraft_ext.media.video import load_video_frames
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.modules.visual import token_statistics
from audiocraft_ext.synth.evaluate import load_attributes

warnings.filterwarnings("ignore")
DESCRIBED = ((0, "brightness"), (1, "speed"))  # (descriptor index, attribute it is read for)


def pixel_tokens(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """The baseline's "tokens": each patch's mean colour, uint8 frames `[C, T, H, W]` -> `[T, P, C]`."""
    pooled = torch.nn.functional.avg_pool2d(frames.permute(1, 0, 2, 3).float() / 255, patch)   # [T, C, h, w]
    return pooled.flatten(2).transpose(1, 2)


def pooled_descriptors(glob: torch.Tensor, local: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """(brightness descriptor `[2D]`, motion descriptor `[2D]`): the two halves of the `token_statistics` of
    global and local tokens `[T, P, D]`."""
    return tuple(token_statistics(glob[None], local[None])[0].chunk(2))  # type: ignore[return-value]


def descriptors(model: VidMuse, video: str, local_fps: tp.Optional[float]) -> tp.Dict[str, tp.Tuple]:
    """{reader: (brightness, motion) descriptors} of one video, read by the model's CLIP tower and by the
    baseline without a tower (each patch's mean colour), on frames sampled as the model does (`local_fps`
    replaces its local frame rate when given)."""
    sampling = model.frame_sampling("squash")
    if local_fps is not None:
        sampling["local_fps"] = local_fps
    frames = load_video_frames(video, **sampling)
    encoder = model.lm.video_encoder
    patch = model.lm.visual_config.clip["patch_size"]
    return {"tower": pooled_descriptors(encoder.clip_tokens(frames.global_frames.permute(1, 0, 2, 3)).float(),
                                        encoder.clip_tokens(frames.local_frames.permute(1, 0, 2, 3)).float()),
            "pixels": pooled_descriptors(pixel_tokens(frames.global_frames, patch),
                                         pixel_tokens(frames.local_frames, patch))}


def ridge_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                  strength: float) -> torch.Tensor:
    """Ridge regression fitted on standardised `train_x` `[N, F]` -> `train_y` `[N]`; predictions for `test_x`."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    design = torch.cat([(train_x - mean) / std, torch.ones(len(train_x), 1)], 1).double()
    weights = torch.linalg.solve(design.T @ design + strength * torch.eye(design.shape[1], dtype=torch.float64),
                                 design.T @ train_y.double())
    return torch.cat([(test_x - mean) / std, torch.ones(len(test_x), 1)], 1).double() @ weights


def rho(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rho of two `[N]` tensors."""
    return float(spearmanr(x.numpy(), y.numpy()).statistic)


def features_and_targets(rows: tp.List[dict], reader: str, index: int,
                         key: str) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Descriptor `index` by `reader` of each row `[N, F]` and the attribute `key` `[N]`."""
    return (torch.stack([row["descriptors"][reader][index] for row in rows]),
            torch.tensor([row[key] for row in rows]))


def cross_look_rho(fit: tp.List[dict], test: tp.List[dict], reader: str, index: int, key: str,
                   strength: float) -> float:
    """rho of the read-out fitted on `fit` and applied to `test`."""
    x, y = features_and_targets(fit, reader, index, key)
    test_x, test_y = features_and_targets(test, reader, index, key)
    return rho(ridge_predict(x, y, test_x, strength), test_y)


def within_look_rho(rows: tp.List[dict], reader: str, index: int, key: str, strength: float,
                    folds: int = 5) -> float:
    """rho of the read-out fitted and tested within `rows` (`folds`-fold cross-validation)."""
    x, y = features_and_targets(rows, reader, index, key)
    fold = torch.arange(len(rows)) % folds
    predicted = torch.zeros(len(rows), dtype=torch.float64)
    for k in range(folds):
        predicted[fold == k] = ridge_predict(x[fold != k], y[fold != k], x[fold == k], strength)
    return rho(predicted, y)


def read_corpus(model: VidMuse, folder: Path, per_look: int, local_fps: tp.Optional[float]) -> tp.List[dict]:
    """The first `per_look` clips of each look of a corpus folder, with their descriptors."""
    counts: tp.Dict[str, int] = defaultdict(int)
    rows = []
    for row in load_attributes(folder):
        if counts[row["look"]] < per_look:
            counts[row["look"]] += 1
            rows.append(row)
    for row in tqdm(rows, desc=f"CLIP tokens ({folder.name})", unit="clip"):
        row["descriptors"] = descriptors(model, row["video_path"], local_fps)
    return rows


def main():
    """Read the clips, print the read-outs' rho per left-out look."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", default="model")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder of several looks (fitting)")
    parser.add_argument("--held_out", type=Path, default=None, help="corpus folder of looks never fitted on")
    parser.add_argument("--per_look", type=int, default=80, help="clips per look")
    parser.add_argument("--ridge", type=float, default=10.0, help="ridge strength (on standardised features)")
    parser.add_argument("--local_fps", type=float, default=None,
                        help="sample the local frames at this rate instead of the model's (what denser frames carry)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = VidMuse.get_pretrained(args.model_path, device="cpu")
    rows = read_corpus(model, args.corpus, args.per_look, args.local_fps)
    extra = read_corpus(model, args.held_out, args.per_look, args.local_fps) if args.held_out else []
    looks = sorted({row["look"] for row in rows})
    fps = args.local_fps or model.lm.visual_config.local_fps
    print(f"{len(rows)} clips of {', '.join(looks)}; held out: {len(extra)} clips; ridge {args.ridge}; "
          f"local frames at {fps:g} fps")
    print("Spearman rho of the read-out fitted on the other looks (within-look: fitted on the look itself, 5-fold);")
    print("tower: the model's CLIP tokens; pixels: each patch's mean colour (the baseline without a tower)")
    readers = ("tower", "pixels")
    print(f"{'left-out look':<16}{'clips':>6}" + "".join(f"{f'{r} brightness':>19}{f'{r} speed':>14}" for r in readers)
          + f"{'within-look brightness':>25}{'within-look speed':>19}")
    for target in looks + sorted({row["look"] for row in extra}):
        fit = [row for row in rows if row["look"] != target]
        test = [row for row in rows + extra if row["look"] == target]
        if len(test) < 10:
            print(f"{target:<16}{len(test):>6}  too few clips for a rank correlation")
            continue
        cross = [cross_look_rho(fit, test, reader, index, key, args.ridge)
                 for reader in readers for index, key in DESCRIBED]
        within = [within_look_rho(test, "tower", index, key, args.ridge) for index, key in DESCRIBED]
        print(f"{target:<16}{len(test):>6}" + "".join(f"{c:>{19 if i % 2 == 0 else 14}.2f}" for i, c in enumerate(cross))
              + f"{within[0]:>25.2f}{within[1]:>19.2f}")


if __name__ == "__main__":
    main()
