"""Low-level statistics of a video's pixels: how bright, how contrasted, how colourful, how much it changes and
how fast it moves.

A frozen CLIP tower normalises every token (its layer norms), so the overall level of a picture, which sets the
register of the synthetic corpus's music, hardly survives in its tokens; these statistics keep it. The descriptor
read-out (`VideoEncoder.predict_descriptors`) reads them beside the pooled CLIP token statistics.
"""

import typing as tp

import torch
from torch.nn import functional as F

LUMA = (0.299, 0.587, 0.114)        # ITU-R BT.601 weights of R, G, B
LUMA_QUANTILES = (0.1, 0.5, 0.9, 0.99)
VALUE_QUANTILE = 0.99
POOLED_SIDE = 56                    # frames are averaged down to this side first: quantiles of a small image
PER_FRAME_NAMES = ("luma_mean", "luma_std", "linear_light", "log_linear_light", "value", "saturation",
                   *(f"luma_q{round(100 * q)}" for q in LUMA_QUANTILES), f"value_q{round(100 * VALUE_QUANTILE)}")
PER_FRAME = len(PER_FRAME_NAMES)
# The columns of `frame_statistics`, in order.
FRAME_STATISTIC_NAMES = (*(f"mean_{name}" for name in PER_FRAME_NAMES), *(f"std_{name}" for name in PER_FRAME_NAMES),
                         "luma_change", "motion")
FRAME_STATISTICS = len(FRAME_STATISTIC_NAMES)
# The level of a picture's brightest parts in their strongest colour channel (HSV value): a look that is darker
# overall (lights over a dark ground) keeps it, where the mean levels shift with the look, and unlike the luma it
# does not depend on the hue of what is brightest (Spearman with the synthetic corpus's brightness, 1000 training
# clips: 0.83 against 0.73 for the luma's 99th percentile).
HIGHLIGHT_STATISTICS = ("mean_value_q99",)
# How far the picture moves (`video_motion`), whatever the look: speed where the token and pixel changes also
# measure how contrasted the look is.
MOTION_STATISTICS = ("motion",)
# Block matching (`block_motion`): frames averaged down to MOTION_SIDE pixels a side, blocks of MOTION_BLOCK pixels
# searched up to MOTION_RADIUS pixels away, a pixel moving where its best match beats no shift by MOTION_MARGIN
# (mean absolute luma difference), MOTION_PAIRS consecutive frame pairs measured per video at most.
MOTION_SIDE = 48
MOTION_BLOCK = 5
MOTION_RADIUS = 10
MOTION_MARGIN = 0.01
MOTION_PAIRS = 16


def per_frame_statistics(frames: torch.Tensor) -> torch.Tensor:
    """Statistics of each frame, uint8 `[B, 3, T, H, W]` -> `[B, T, PER_FRAME]` (`PER_FRAME_NAMES`): luma mean and
    standard deviation, mean of the linear-light luma and its log (exposure acts on linear light), mean HSV value
    and saturation, the `LUMA_QUANTILES` of the luma and the `VALUE_QUANTILE` of the HSV value."""
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
                                    saturation.mean(1)], dim=1), quantiles,
                       torch.quantile(value, VALUE_QUANTILE, dim=1)[:, None]], dim=1)
    return stats.view(B, T, PER_FRAME)


def block_motion(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """How far the moving parts of frames moved, luma `[N, S, S]` before and after -> `[N]` in frame sides: the mean
    over the moving pixels of each pixel's displacement, the shift (at most `MOTION_RADIUS` pixels) whose block of
    `before` best matches the pixel's block of `after` (mean absolute difference over `MOTION_BLOCK` pixels a
    side); a pixel moves where that match beats no shift by `MOTION_MARGIN` (0 where nothing moves). Unlike a
    change of the pixel values, it measures a distance: a dim, blurred look moving at the same speed as a bright,
    sharp one gives the same value."""
    side, radius = before.shape[-1], MOTION_RADIUS
    before, after = before[:, None], after[:, None]

    def block_cost(shifted: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d((after - shifted).abs(), MOTION_BLOCK, 1, MOTION_BLOCK // 2, count_include_pad=False)
    still = block_cost(before)
    best, distance = still, torch.zeros_like(after)
    padded = F.pad(before, (radius,) * 4, mode="replicate")
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dx == dy == 0:
                continue
            length = (dx * dx + dy * dy) ** 0.5
            shifted = padded[..., radius + dy:radius + dy + side, radius + dx:radius + dx + side]
            cost = block_cost(shifted) + 1e-4 * length  # of equal matches, the shortest shift
            better = cost < best
            best = torch.where(better, cost, best)
            distance = torch.where(better, torch.full_like(distance, length), distance)
    moving = (still - best > MOTION_MARGIN).float()
    return (distance * moving).sum((1, 2, 3)) / moving.sum((1, 2, 3)).clamp(min=1) / side


def video_motion(frames: torch.Tensor, length: int) -> float:
    """The median `block_motion` between consecutive frames of the first `length` of uint8 frames `[3, T, H, W]`,
    over at most `MOTION_PAIRS` evenly spaced pairs (robust to a cut between two frames): how far the video moves per
    frame step, in frame sides (0 with fewer than two frames)."""
    if length < 2:
        return 0.0
    starts = torch.linspace(0, length - 2, min(MOTION_PAIRS, length - 1)).round().long().unique()
    pairs = frames[:, torch.stack([starts, starts + 1], 1).flatten()].float() / 255  # [3, 2P, H, W]
    luma = (pairs * torch.tensor(LUMA, device=frames.device)[:, None, None, None]).sum(0)
    luma = F.adaptive_avg_pool2d(luma[:, None], (MOTION_SIDE, MOTION_SIDE))[:, 0].view(-1, 2, MOTION_SIDE, MOTION_SIDE)
    return float(block_motion(luma[:, 0], luma[:, 1]).median())


def frame_statistics(frames: torch.Tensor, lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pooled pixel statistics of videos, uint8 `[B, 3, T, H, W]` (`lengths` `[B]` valid frames, default all) ->
    `[B, FRAME_STATISTICS]` (`FRAME_STATISTIC_NAMES`): the mean and standard deviation over the valid frames of
    each `per_frame_statistics`, the mean absolute change of the luma mean between consecutive valid frames (0
    with fewer than two), and the `video_motion`."""
    B, T = frames.shape[0], frames.shape[2]
    lengths = torch.full((B,), T) if lengths is None else lengths.cpu()
    valid = (torch.arange(T)[None] < lengths[:, None]).to(frames.device)  # [B, T]
    stats = per_frame_statistics(frames)
    weight = valid.float()[..., None] / lengths.clamp(min=1).to(frames.device).float()[:, None, None]
    mean = (stats * weight).sum(1)
    std = ((stats - mean[:, None]).pow(2) * weight).sum(1).sqrt()
    change = (stats[:, 1:, 0] - stats[:, :-1, 0]).abs() * (valid[:, 1:] & valid[:, :-1])
    change = change.sum(1) / (lengths - 1).clamp(min=1).to(frames.device).float()
    motion = torch.tensor([video_motion(frames[b], int(lengths[b])) for b in range(B)], device=frames.device)
    return torch.cat([mean, std, change[:, None], motion[:, None]], dim=1)
