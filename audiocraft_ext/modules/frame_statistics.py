"""Low-level statistics of a video's pixels: how bright, how contrasted, how colourful, how much it changes.

A frozen CLIP tower normalises every token (its layer norms), so the overall level of a picture, which sets the
register of the synthetic corpus's music, hardly survives in its tokens; these statistics keep it. The descriptor
read-out (`VideoEncoder.predict_descriptors`) reads them beside the pooled CLIP token statistics.
"""

import typing as tp

import torch
from torch.nn import functional as F

LUMA = (0.299, 0.587, 0.114)        # ITU-R BT.601 weights of R, G, B
LUMA_QUANTILES = (0.1, 0.5, 0.9, 0.99)
POOLED_SIDE = 56                    # frames are averaged down to this side first: quantiles of a small image
PER_FRAME_NAMES = ("luma_mean", "luma_std", "linear_light", "log_linear_light", "value", "saturation",
                   *(f"luma_q{round(100 * q)}" for q in LUMA_QUANTILES))
PER_FRAME = len(PER_FRAME_NAMES)
# The columns of `frame_statistics`, in order.
FRAME_STATISTIC_NAMES = (*(f"mean_{name}" for name in PER_FRAME_NAMES), *(f"std_{name}" for name in PER_FRAME_NAMES),
                         "luma_change")
FRAME_STATISTICS = len(FRAME_STATISTIC_NAMES)
# The level of a picture's brightest parts: a look that is darker overall (lights over a dark ground) keeps it,
# where the mean levels shift with the look.
HIGHLIGHT_STATISTICS = ("mean_luma_q99",)


def per_frame_statistics(frames: torch.Tensor) -> torch.Tensor:
    """Statistics of each frame, uint8 `[B, 3, T, H, W]` -> `[B, T, PER_FRAME]` (`PER_FRAME_NAMES`): luma mean and
    standard deviation, mean of the linear-light luma and its log (exposure acts on linear light), mean HSV value
    and saturation, and the `LUMA_QUANTILES` of the luma."""
    B, _, T, H, W = frames.shape
    rgb = frames.permute(0, 2, 1, 3, 4).reshape(B * T, 3, H, W).float() / 255
    rgb = F.adaptive_avg_pool2d(rgb, (min(H, POOLED_SIDE), min(W, POOLED_SIDE))).flatten(2)  # [BT, 3, S]
    weights = torch.tensor(LUMA, device=rgb.device)[:, None]
    luma = (rgb * weights).sum(1)
    linear = (rgb.pow(2.2) * weights).sum(1).mean(1)
    value, darkest = rgb.amax(1), rgb.amin(1)
    saturation = (value - darkest) / value.clamp(min=1e-3)
    quantiles = torch.quantile(luma, torch.tensor(LUMA_QUANTILES, device=rgb.device), dim=1).T  # [BT, Q]
    stats = torch.cat([torch.stack([luma.mean(1), luma.std(1), linear, torch.log(linear + 1e-3), value.mean(1),
                                    saturation.mean(1)], dim=1), quantiles], dim=1)
    return stats.view(B, T, PER_FRAME)


def frame_statistics(frames: torch.Tensor, lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pooled pixel statistics of videos, uint8 `[B, 3, T, H, W]` (`lengths` `[B]` valid frames, default all) ->
    `[B, FRAME_STATISTICS]` (`FRAME_STATISTIC_NAMES`): the mean and standard deviation over the valid frames of
    each `per_frame_statistics`, and the mean absolute change of the luma mean between consecutive valid frames (0
    with fewer than two)."""
    B, T = frames.shape[0], frames.shape[2]
    lengths = torch.full((B,), T) if lengths is None else lengths.cpu()
    valid = (torch.arange(T)[None] < lengths[:, None]).to(frames.device)  # [B, T]
    stats = per_frame_statistics(frames)
    weight = valid.float()[..., None] / lengths.clamp(min=1).to(frames.device).float()[:, None, None]
    mean = (stats * weight).sum(1)
    std = ((stats - mean[:, None]).pow(2) * weight).sum(1).sqrt()
    change = (stats[:, 1:, 0] - stats[:, :-1, 0]).abs() * (valid[:, 1:] & valid[:, :-1])
    change = change.sum(1) / (lengths - 1).clamp(min=1).to(frames.device).float()
    return torch.cat([mean, std, change[:, None]], dim=1)
