"""Can a linear read-out recover brightness and speed from a model's CLIP tokens, on a look it was not fitted on?

A measurement for choosing a vision tower (model card, "On the corpus's second edition"): the tower is frozen,
so what it does not carry about a picture no training above it can recover. For each clip of the synthetic
corpus (`egs/synth`, several looks; `attributes.jsonl` holds the knobs), the model's CLIP tower encodes the frames
as the model samples them, and two pooled descriptors are kept:
- of the global frames: the mean and standard deviation of every token dimension (for brightness);
- of the changes between consecutive local frames (`frame_changes`, what the model's motion features read): the mean
  and standard deviation of their absolute values per dimension (for speed).
Ridge regressions fitted on every look but one predict the left-out look's brightness and speed; the script prints
Spearman's rho per left-out look (`--held_out` adds a corpus of looks never used for fitting, e.g. the evaluation's
`bokeh`), next to the same read-out fitted and tested within each look (a look's ceiling, 5-fold).

    python benchmarks/visual_probe.py --model_path model --corpus egs/synth/train --held_out egs/synth/test_bokeh
"""

import argparse
from collections import defaultdict
from pathlib import Path
import typing as tp
import warnings

from scipy.stats import spearmanr
import torch
from tqdm import tqdm

from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.modules.visual import frame_changes
from audiocraft_ext.synth.evaluate import load_attributes

warnings.filterwarnings("ignore")
DESCRIBED = ((0, "brightness"), (1, "speed"))  # (descriptor index, attribute it is read for)


def descriptors(model: VidMuse, video: str) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """(brightness descriptor `[2D]`, motion descriptor `[2D]`) of one video's CLIP tokens."""
    frames = model.load_video(video)
    encoder = model.lm.video_encoder
    glob = encoder.clip_tokens(frames.global_frames.permute(1, 0, 2, 3)).float()      # [Tg, P, D]
    local = encoder.clip_tokens(frames.local_frames.permute(1, 0, 2, 3)).float()      # [T, P, D]
    changes = frame_changes(local[None])[0, 1:].abs()                                  # [T - 1, P, D]
    return (torch.cat([glob.mean((0, 1)), glob.std((0, 1))]),
            torch.cat([changes.mean((0, 1)), changes.std((0, 1))]))


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


def features_and_targets(rows: tp.List[dict], index: int, key: str) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Descriptor `index` of each row `[N, F]` and the attribute `key` `[N]`."""
    return torch.stack([row["descriptors"][index] for row in rows]), torch.tensor([row[key] for row in rows])


def cross_look_rho(fit: tp.List[dict], test: tp.List[dict], index: int, key: str, strength: float) -> float:
    """rho of the read-out fitted on `fit` and applied to `test`."""
    x, y = features_and_targets(fit, index, key)
    test_x, test_y = features_and_targets(test, index, key)
    return rho(ridge_predict(x, y, test_x, strength), test_y)


def within_look_rho(rows: tp.List[dict], index: int, key: str, strength: float, folds: int = 5) -> float:
    """rho of the read-out fitted and tested within `rows` (`folds`-fold cross-validation)."""
    x, y = features_and_targets(rows, index, key)
    fold = torch.arange(len(rows)) % folds
    predicted = torch.zeros(len(rows), dtype=torch.float64)
    for k in range(folds):
        predicted[fold == k] = ridge_predict(x[fold != k], y[fold != k], x[fold == k], strength)
    return rho(predicted, y)


def read_corpus(model: VidMuse, folder: Path, per_look: int) -> tp.List[dict]:
    """The first `per_look` clips of each look of a corpus folder, with their descriptors."""
    counts: tp.Dict[str, int] = defaultdict(int)
    rows = []
    for row in load_attributes(folder):
        if counts[row["look"]] < per_look:
            counts[row["look"]] += 1
            rows.append(row)
    for row in tqdm(rows, desc=f"CLIP tokens ({folder.name})", unit="clip"):
        row["descriptors"] = descriptors(model, row["video_path"])
    return rows


def main():
    """Read the clips, print the read-outs' rho per left-out look."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", default="model")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder of several looks (fitting)")
    parser.add_argument("--held_out", type=Path, default=None, help="corpus folder of looks never fitted on")
    parser.add_argument("--per_look", type=int, default=80, help="clips per look")
    parser.add_argument("--ridge", type=float, default=10.0, help="ridge strength (on standardised features)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = VidMuse.get_pretrained(args.model_path, device="cpu")
    rows = read_corpus(model, args.corpus, args.per_look)
    extra = read_corpus(model, args.held_out, args.per_look) if args.held_out else []
    looks = sorted({row["look"] for row in rows})
    print(f"{len(rows)} clips of {', '.join(looks)}; held out: {len(extra)} clips; ridge {args.ridge}")
    print(f"{'left-out look':<16}{'clips':>6}{'brightness rho':>16}{'speed rho':>12}"
          f"{'within-look brightness':>25}{'within-look speed':>19}")
    for target in looks + sorted({row["look"] for row in extra}):
        fit = [row for row in rows if row["look"] != target]
        test = [row for row in rows + extra if row["look"] == target]
        if len(test) < 10:
            print(f"{target:<16}{len(test):>6}  too few clips for a rank correlation")
            continue
        figures = [cross_look_rho(fit, test, index, key, args.ridge) for index, key in DESCRIBED]
        figures += [within_look_rho(test, index, key, args.ridge) for index, key in DESCRIBED]
        print(f"{target:<16}{len(test):>6}{figures[0]:>16.2f}{figures[1]:>12.2f}{figures[2]:>25.2f}"
              f"{figures[3]:>19.2f}")


if __name__ == "__main__":
    main()
