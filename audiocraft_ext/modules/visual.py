"""The visual side of VidMuse: CLIP frame tokens, the long-short-term fusion, and the projection to the LM.

Module and parameter names follow the release's state dict (`local_temporal_transformer.layers.N.0.fn.to_qkv`,
`multi_head_cross_attention.query`, ...), so an official checkpoint loads after only a prefix change
(see `audiocraft_ext.models.loaders.map_official_state_dict`).
"""

from dataclasses import asdict, dataclass, field
import typing as tp

from audiocraft.modules.transformer import create_sin_embedding
from einops import rearrange
import torch
from torch import nn
from torch.nn import functional as F
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from .frame_statistics import (FRAME_STATISTIC_NAMES, FRAME_STATISTICS, HIGHLIGHT_STATISTICS, MOTION_STATISTICS,
                               frame_statistics)
from .music_descriptors import DESCRIPTORS

# CLIP's image normalisation (openai/clip-vit-base-patch32 preprocessor_config.json).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Predicted descriptors are clipped to this many spreads from their mean: statistics unlike any of the fitting
# clips' (the null video's black frames have no spread and no motion) would otherwise ask the LM for extremes.
DESCRIPTOR_LIMIT = 3.0
# The read-out's candidate inputs, fewest features first: the fit takes the first whose cross-validated error is
# within one standard error of the best (a read-out of a few pixel statistics generalises to unseen looks where one
# of thousands of token statistics would follow the training looks). "highlights": `HIGHLIGHT_STATISTICS`;
# "motion": `MOTION_STATISTICS`; "pixels": all the `frame_statistics`; "tokens": the `token_statistics`; "both": all.
DESCRIPTOR_INPUTS = ("highlights", "motion", "pixels", "tokens", "both")
# ViT-B/32 as loaded by the release from `openai/clip-vit-base-patch32`.
CLIP_VIT_B32 = dict(hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12,
                    num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                    hidden_act="quick_gelu", layer_norm_eps=1e-5)


@dataclass
class VisualConfig:
    """Everything needed to build the visual side of a VidMuse LM.

    Attributes:
        clip: `CLIPVisionConfig` keyword arguments of the (frozen) vision tower.
        temporal_dim: width of the frame tokens (= CLIP hidden size).
        temporal_depth, temporal_heads, temporal_dim_head, temporal_mlp_dim: the per-frame transformers
            (the release calls them "temporal"; they attend within each frame's tokens).
        fusion_heads: heads of the local-to-global cross-attention (3 in the release).
        cross_frame_depth: layers of attention across the local frames at each token position, after the
            per-frame transformers (0 in the release, whose memory holds each frame on its own). They let the
            memory carry motion: how a patch changes from one frame to the next.
        motion_features: add to each local frame's tokens, after the per-frame transformers, an MLP of how its
            CLIP tokens changed since the previous local frame (zero for a window's first frame), as two-stream
            video models add a frame-difference stream. Attention across frames can only average frames, so it
            learns such differences slowly; speed read from motion needs them. Off in the release.
        frame_time_embedding: add a sinusoidal embedding of each local frame's time (window-relative) to the
            projected memory. Off for the release's weights; new models should turn it on (DESIGN §4).
        frame_time_rate: positions per second of that embedding. None: `local_fps` (one position per local
            frame); the LM's frame rate (50) puts frame times on the scale of the LM's own sinusoidal positions,
            so that a decoding step can find the frames of its own time.
        frame_time_max_period: max period of that embedding, in positions.
        music_descriptors: predict the music's descriptors (`modules.music_descriptors`: onset rate, register)
            by a linear read-out of the whole video's `descriptor_statistics` (pooled CLIP token statistics and
            pixel statistics; `predict_descriptors`), fitted in closed form on a training set
            (`fit_descriptor_head`), and embed descriptors (`embed_descriptors`) for the LM to add to its input
            at every step: the values read off the music itself in training (teacher forcing), the predicted ones
            at inference. The LM then learns tempo and register from a clean signal, and the picture sets them
            through the read-out. Off in the release.
        descriptor_mean, descriptor_std: the descriptors' typical mean and spread, to put them on a unit scale
            (defaults: 2 s segments of the synthetic corpus, log(1 + onsets/s) 1.52 +- 0.40, register 8.25 +- 0.53
            log2 Hz).
        local_fps: rate of the local frames (2 in the release).
        num_global_frames: global frames at inference (32 in the release; its training used 64).
    """
    clip: tp.Dict[str, tp.Any] = field(default_factory=lambda: dict(CLIP_VIT_B32))
    temporal_dim: int = 768
    temporal_depth: int = 2
    temporal_heads: int = 16
    temporal_dim_head: int = 64
    temporal_mlp_dim: int = 3072
    fusion_heads: int = 3
    cross_frame_depth: int = 0
    motion_features: bool = False
    frame_time_embedding: bool = False
    frame_time_rate: tp.Optional[float] = None
    frame_time_max_period: float = 10000.0
    music_descriptors: bool = False
    descriptor_mean: tp.Tuple[float, ...] = (1.5, 8.25)
    descriptor_std: tp.Tuple[float, ...] = (0.4, 0.5)
    local_fps: float = 2.0
    num_global_frames: int = 32

    def to_dict(self) -> tp.Dict[str, tp.Any]:
        return asdict(self)


def clip_preprocess(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """CLIP pixel normalisation of uint8 frames `[N, 3, H, W]` (already 224×224) -> `[N, 3, H, W]` float.

    Rescales by 1/255 in float64 then normalises in float32, as `CLIPImageProcessor` does; black frames become
    `-mean / std` per channel (the release's CFG null condition).
    """
    pixels = (frames.to(torch.float64) * (1 / 255)).to(torch.float32)
    mean = torch.tensor(CLIP_MEAN, device=frames.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=frames.device, dtype=torch.float32).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(dtype)


def token_statistics(global_tokens: torch.Tensor, local_tokens: torch.Tensor,
                     local_lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pooled statistics of CLIP tokens, `[B, Tg, P, D], [B, T, P, D], [B] -> [B, 4 * D]`: the global tokens'
    mean and standard deviation per dimension (the picture: colour, brightness), and the log of the mean and of
    the standard deviation of the absolute changes between consecutive valid local frames (`frame_changes`: the
    motion; the log puts speeds on a ratio scale). An item with fewer than two valid local frames has no change.
    """
    T = local_tokens.shape[1]
    lengths = torch.full((len(local_tokens),), T, device=local_tokens.device) if local_lengths is None \
        else local_lengths.to(local_tokens.device)
    changes = frame_changes(local_tokens, lengths).abs()
    count = ((lengths - 1).clamp(min=0) * local_tokens.shape[2]).clamp(min=1)[:, None].float()  # [B, 1] per dim
    change_mean = changes.sum((1, 2)) / count
    change_std = (changes.pow(2).sum((1, 2)) / count - change_mean.pow(2)).clamp(min=0).sqrt()
    return torch.cat([global_tokens.mean((1, 2)), global_tokens.std((1, 2)),
                      torch.log(change_mean + 1e-4), torch.log(change_std + 1e-4)], dim=-1)


def descriptor_statistics(global_tokens: torch.Tensor, local_tokens: torch.Tensor, local_frames: torch.Tensor,
                          local_lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """What the descriptor read-out reads of a video, `[B, 4 * D + FRAME_STATISTICS]`: the `token_statistics` of
    its global tokens `[B, Tg, P, D]` and local tokens `[B, T, P, D]`, then the `frame_statistics` of the local
    frames they came from (uint8 `[B, 3, T, H, W]`; `local_lengths` `[B]` valid frames)."""
    return torch.cat([token_statistics(global_tokens.float(), local_tokens.float(), local_lengths),
                      frame_statistics(local_frames, local_lengths).to(local_tokens.device)], dim=-1)


def ridge_regression(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression of `y` `[N]` on `x` `[N, F]` with an unpenalised intercept: weights `[F]` and bias."""
    x_mean, y_mean = x.mean(0), y.mean()
    centred = x - x_mean
    gram = centred.T @ centred + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(gram, centred.T @ (y - y_mean))
    return w, y_mean - x_mean @ w


@dataclass
class DescriptorFit:
    """What `VideoEncoder.fit_descriptor_head` fitted, one value per descriptor: the inputs (`DESCRIPTOR_INPUTS`)
    and ridge strength chosen by cross-validation, the Pearson correlation of the held-out predictions with the
    descriptors (unit scale), and the factor that put the read-out back on the descriptors' spread (0: not
    readable, the mean is predicted)."""
    clips: int
    folds: int
    inputs: tp.List[str]
    ridge: tp.List[float]
    correlation: tp.List[float]
    spread_factor: tp.List[float]


def frame_changes(tokens: torch.Tensor, lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
    """Change of each frame's tokens since the previous frame, `[B, T, P, D] -> [B, T, P, D]`: zero for the
    first frame and for padding frames past an item's `lengths` (`[B]`)."""
    changes = torch.zeros_like(tokens)
    changes[:, 1:] = tokens[:, 1:] - tokens[:, :-1]
    if lengths is not None:
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths.to(tokens.device)[:, None]
        changes = changes * valid[:, :, None, None].to(changes.dtype)
    return changes


class PreNorm(nn.Module):
    """`fn(LayerNorm(x), **kwargs)`."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class TokenSelfAttention(nn.Module):
    """Multi-head self-attention over a token sequence, `[N, L, dim] -> [N, L, dim]`, with an optional bool key
    mask `[N, L]` (True = attend)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dropout = dropout
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        q, k, v = (rearrange(t, "n p (h d) -> n h p d", h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "n h p d -> n p (h d)"))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear with dropout, `[..., dim] -> [..., dim]`."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FrameTransformer(nn.Module):
    """Pre-norm transformer over sequences of tokens: `[N, L, dim] -> [N, L, dim]`, optional bool key mask `[N, L]`.

    The release's "temporal" transformers apply it to each frame's tokens independently (frames are not mixed:
    attention is within a frame); the optional cross-frame transformer applies it across the local frames at
    each token position.
    """

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([PreNorm(dim, TokenSelfAttention(dim, heads, dim_head, dropout)),
                           PreNorm(dim, FeedForward(dim, mlp_dim, dropout))])
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        for attention, feed_forward in self.layers:  # type: ignore[misc]
            x = attention(x, mask=mask) + x
            x = feed_forward(x) + x
        return self.norm(x)


class GlobalContextAttention(nn.Module):
    """Local tokens attend to global tokens (post-norm residual blocks), `[B, N, dim], [B, M, dim] -> [B, N, dim]`.

    `final_linear` starts at zero, so a fresh module passes the local tokens through (up to the norms).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.final_linear = nn.Linear(dim, dim)
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, local: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.num_heads)
                   for t in (self.query(local), self.key(context), self.value(context)))
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
        out = self.norm1(attended + local)
        return self.norm2(self.final_linear(out) + out)


class VideoEncoder(nn.Module):
    """Frames -> cross-attention memory of the LM (VidMuse's visual encoder + long-short-term module).

    Args:
        config: the `VisualConfig`.
        output_dim: LM width.
    Shapes: local frames uint8 `[B, 3, T, H, W]`, global frames uint8 `[B, 3, Tg, H, W]`,
    output `[B, T * P, output_dim]` with P tokens per frame (50 for ViT-B/32 at 224 px).
    """

    def __init__(self, config: VisualConfig, output_dim: int):
        super().__init__()
        self.config = config
        clip_config = CLIPVisionConfig(**config.clip)
        if clip_config.hidden_size != config.temporal_dim:
            raise ValueError(f"CLIP width {clip_config.hidden_size} != temporal_dim {config.temporal_dim}")
        num_tokens = (clip_config.image_size // clip_config.patch_size) ** 2 + 1
        self.visual_encoder_model = CLIPVisionModelWithProjection(clip_config)
        self.visual_encoder_model.requires_grad_(False)
        self.visual_encoder_model.eval()
        dim = config.temporal_dim
        self.local_pos_embedding = nn.Parameter(torch.randn(1, num_tokens, dim))
        self.global_pos_embedding = nn.Parameter(torch.randn(1, num_tokens, dim))
        transformer_args = dict(dim=dim, depth=config.temporal_depth, heads=config.temporal_heads,
                                dim_head=config.temporal_dim_head, mlp_dim=config.temporal_mlp_dim)
        self.local_temporal_transformer = FrameTransformer(**transformer_args)  # type: ignore[arg-type]
        self.global_temporal_transformer = FrameTransformer(**transformer_args)  # type: ignore[arg-type]
        self.cross_frame_transformer: tp.Optional[FrameTransformer] = None
        if config.cross_frame_depth:
            self.cross_frame_transformer = FrameTransformer(
                **{**transformer_args, "depth": config.cross_frame_depth})  # type: ignore[arg-type]
        self.motion_mlp: tp.Optional[FeedForward] = None
        if config.motion_features:
            self.motion_mlp = FeedForward(dim, config.temporal_mlp_dim)
            last = self.motion_mlp.net[-2]  # starts at zero: a model fine-tuned with it keeps its memory at first
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.multi_head_cross_attention = GlobalContextAttention(dim, config.fusion_heads)
        self.visual_feature_proj = nn.Linear(dim, output_dim)
        self.descriptor_head: tp.Optional[nn.Sequential] = None
        self.descriptor_embedding: tp.Optional[nn.Sequential] = None
        if config.music_descriptors:
            count = len(config.descriptor_mean)
            # a statistic's level across dimensions (how much the tokens change) carries speed, so each statistic
            # is standardised over the fitting clips (the norm's running statistics), not across dimensions
            width = 4 * dim + FRAME_STATISTICS  # `descriptor_statistics`
            self.descriptor_head = nn.Sequential(nn.BatchNorm1d(width, affine=False), nn.Linear(width, count))
            self.descriptor_head.requires_grad_(False)  # fitted in closed form (`fit_descriptor_head`), not learnt
            self.register_buffer("descriptor_fit_clips", torch.zeros(()))  # float: AudioCraft's EMA keeps floats only
            self.descriptor_embedding = nn.Sequential(nn.Linear(count, output_dim), nn.GELU(),
                                                      nn.Linear(output_dim, output_dim))
            nn.init.zeros_(self.descriptor_embedding[-1].weight)  # a model fine-tuned with it is unchanged at first
            nn.init.zeros_(self.descriptor_embedding[-1].bias)

    def train(self, mode: bool = True):
        super().train(mode)
        self.visual_encoder_model.eval()  # the CLIP tower stays frozen
        if self.descriptor_head is not None:
            self.descriptor_head.eval()  # standardised by the fitting clips' statistics, never a batch's
        return self

    def reset_non_persistent_buffers(self):
        """Rebuild CLIP's `position_ids` (a buffer not saved in checkpoints), e.g. after building on `meta`."""
        embeddings = self.visual_encoder_model.vision_model.embeddings
        embeddings.position_ids = torch.arange(embeddings.num_positions).expand((1, -1))

    @property
    def tokens_per_frame(self) -> int:
        return self.local_pos_embedding.shape[1]

    @torch.no_grad()
    def clip_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """CLIP `last_hidden_state` of uint8 frames `[N, 3, H, W]` -> `[N, P, temporal_dim]` (no post-layernorm).

        Identical frames (a still image, the black frames of the null video) go through CLIP once."""
        distinct, inverse = torch.unique(frames.flatten(1), dim=0, return_inverse=True)
        if len(distinct) < len(frames):
            return self.clip_tokens(distinct.view(-1, *frames.shape[1:]))[inverse.to(self.local_pos_embedding.device)]
        dtype = self.local_pos_embedding.dtype
        pixels = clip_preprocess(frames.to(self.local_pos_embedding.device), dtype)
        return self.visual_encoder_model.vision_model(pixel_values=pixels).last_hidden_state

    def fuse(self, local_tokens: torch.Tensor, global_tokens: torch.Tensor,
             local_times: tp.Optional[torch.Tensor] = None,
             local_lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Long-short-term fusion of CLIP tokens.

        Args:
            local_tokens: `[B, T, P, D]` CLIP tokens of the local frames.
            global_tokens: `[B, Tg, P, D]` CLIP tokens of the global frames.
            local_times: `[B, T]` time of each local frame in seconds from the window start, for the
                cross-frame transformer and the frame-time embedding (default: k / local_fps).
            local_lengths: `[B]` valid local frames per item (padding after them is not attended across frames).
        Returns:
            `[B, T * P, output_dim]` cross-attention memory.
        """
        B, T = local_tokens.shape[:2]
        if local_times is None:
            local_times = torch.arange(T, device=local_tokens.device).float().expand(B, -1) / self.config.local_fps
        local_times = local_times.to(local_tokens.device).float()
        local = self.local_temporal_transformer(local_tokens.flatten(0, 1) + self.local_pos_embedding)
        glob = self.global_temporal_transformer(global_tokens.flatten(0, 1) + self.global_pos_embedding)
        local = rearrange(local, "(b t) p d -> b t p d", b=B)
        if self.motion_mlp is not None:
            local = local + self.motion_mlp(frame_changes(local_tokens, local_lengths))
        if self.cross_frame_transformer is not None:
            local = self.mix_frames(local, local_times, local_lengths)
        local = rearrange(local, "b t p d -> b (t p) d")
        glob = rearrange(glob, "(b t) p d -> b (t p) d", b=B)
        memory = self.visual_feature_proj(self.multi_head_cross_attention(local, glob))
        if self.config.frame_time_embedding:
            rate = self.config.frame_time_rate or self.config.local_fps
            emb = self.time_embedding(local_times * rate, memory.shape[-1])  # [B, T, output_dim]
            memory = memory + emb.repeat_interleave(self.tokens_per_frame, dim=1).to(memory.dtype)
        return memory

    def mix_frames(self, local: torch.Tensor, local_times: torch.Tensor,
                   local_lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cross-frame transformer at each token position, frames ordered by a sinusoidal embedding of their
        index (time x local_fps): `[B, T, P, D], [B, T], [B] -> [B, T, P, D]`."""
        assert self.cross_frame_transformer is not None
        B, T, P, D = local.shape
        order = self.time_embedding(local_times * self.config.local_fps, D).to(local.dtype)  # [B, T, D]
        mask = None
        if local_lengths is not None:
            valid = torch.arange(T, device=local.device)[None] < local_lengths.to(local.device)[:, None]
            mask = valid.repeat_interleave(P, dim=0)  # [(B P), T]
        mixed = self.cross_frame_transformer(rearrange(local + order[:, :, None], "b t p d -> (b p) t d"), mask)
        return rearrange(mixed, "(b p) t d -> b t p d", b=B, p=P)

    def time_embedding(self, positions: torch.Tensor, dim: int) -> torch.Tensor:
        """Sinusoidal embedding `[B, T, dim]` of frame positions `[B, T]` (AudioCraft's, as for the LM's steps)."""
        return create_sin_embedding(positions[..., None], dim, max_period=self.config.frame_time_max_period)

    def tokens(self, visual: torch.Tensor) -> torch.Tensor:
        """CLIP tokens `[B, T, P, D]` of uint8 frames `[B, 3, T, H, W]`; float input is taken as tokens already
        (e.g. from the feature cache) and returned in the module's dtype."""
        if visual.dtype != torch.uint8:
            return visual.to(self.local_pos_embedding)
        B, _, T = visual.shape[:3]
        tokens = self.clip_tokens(rearrange(visual, "b c t h w -> (b t) c h w"))
        return tokens.view(B, T, *tokens.shape[1:])

    def normalize_descriptors(self, descriptors: torch.Tensor) -> torch.Tensor:
        """`music_descriptors` values `[B, N]` -> the same on the unit scale the head predicts `[B, N]`."""
        mean, std = self._descriptor_scale(descriptors.device)
        return (descriptors.float() - mean) / std

    def denormalize_descriptors(self, unit: torch.Tensor) -> torch.Tensor:
        """Descriptors on the unit scale `[B, N]` -> `music_descriptors` values `[B, N]` (float)."""
        mean, std = self._descriptor_scale(unit.device)
        return mean + std * unit.float()

    def descriptor_range(self) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """The lowest and highest `music_descriptors` values `[N]` the model reads from a video (its unit scale
        clipped to `DESCRIPTOR_LIMIT`): the range it was trained on, and so the range worth asking for."""
        limit = torch.full((1, len(self.config.descriptor_mean)), DESCRIPTOR_LIMIT)
        return self.denormalize_descriptors(-limit)[0], self.denormalize_descriptors(limit)[0]

    def _descriptor_scale(self, device: torch.device) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """`descriptor_mean` and `descriptor_std` as float tensors `[N]`."""
        return tuple(torch.tensor(v, dtype=torch.float32, device=device)  # type: ignore[return-value]
                     for v in (self.config.descriptor_mean, self.config.descriptor_std))

    @property
    def descriptor_head_fitted(self) -> bool:
        return self.descriptor_head is not None and int(self.descriptor_fit_clips) > 0

    def predict_descriptors(self, global_tokens: torch.Tensor, local_tokens: torch.Tensor,
                            local_frames: torch.Tensor, local_lengths: tp.Optional[torch.Tensor] = None
                            ) -> torch.Tensor:
        """The music's descriptors on the unit scale `[B, N]` predicted from the CLIP tokens of the global frames
        `[B, Tg, P, D]` and of local-rate frames `[B, T, P, D]`, and those frames (uint8 `[B, 3, T, H, W]`;
        `local_lengths` `[B]` valid frames; the whole video's, as the head was fitted), by the linear read-out of
        their `descriptor_statistics`, clipped to `DESCRIPTOR_LIMIT`."""
        assert self.descriptor_head is not None, "built without music_descriptors"
        statistics = descriptor_statistics(global_tokens, local_tokens, local_frames, local_lengths)
        predicted = self.descriptor_head(statistics.to(self.descriptor_head[-1].weight))
        return predicted.clamp(-DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT).to(self.local_pos_embedding.dtype)

    def null_descriptors(self) -> torch.Tensor:
        """The `music_descriptors` values `[N]` the model predicts for the null video (black frames), which
        classifier-free guidance conditions on: the same for any length of video."""
        size = self.config.clip["image_size"]
        device = self.local_pos_embedding.device
        black = torch.zeros(1, 3, 2, size, size, dtype=torch.uint8, device=device)
        tokens = self.tokens(black)
        return self.denormalize_descriptors(self.predict_descriptors(tokens, tokens, black))[0]

    @torch.no_grad()
    def fit_descriptor_head(self, statistics: torch.Tensor, descriptors: torch.Tensor,
                            ridges: tp.Sequence[float] = (1.0, 10.0, 100.0, 1000.0), folds: int = 5,
                            max_spread_factor: float = 3.0, domains: tp.Optional[tp.Sequence[str]] = None,
                            candidate_inputs: tp.Optional[tp.Mapping[str, tp.Sequence[str]]] = None
                            ) -> "DescriptorFit":
        """Fit the descriptor head in closed form: ridge regressions of `music_descriptors` values `[N, C]` on
        `descriptor_statistics` `[N, 4D + FRAME_STATISTICS]` of N clips (each clip's whole video and whole music),
        on standardised statistics, each descriptor's inputs (`DESCRIPTOR_INPUTS`: the highlights' level, the pixel
        statistics, the token statistics or all) and ridge strength chosen among `ridges` by `folds`-fold
        cross-validation: the fewest inputs whose held-out error is within one standard error of the best. With
        each clip's domain (`domains`, e.g. a look; at least two distinct), each fold holds out one whole domain
        instead, so that the choice is the read-out that carries to a kind of video it was not fitted on.
        A ridge shrinks its predictions towards the mean, and an LM conditioned on them would then play every
        video near the typical tempo and register, so the read-out is scaled to put its held-out predictions back
        on the descriptors' own spread (by at most `max_spread_factor`: held-out predictions that hardly vary are
        mostly noise, which the factor would amplify); a descriptor whose held-out predictions correlate with it by
        less than three standard errors of no correlation (3 / sqrt(N)) is predicted as its mean (factor 0).
        Fewer clips than `folds` are left out one at a time. `candidate_inputs` narrows the inputs tried for a
        descriptor (by name, `DESCRIPTORS`; default: all `DESCRIPTOR_INPUTS`): a prior for where the folds cannot
        tell, e.g. when every training domain has the same base level and a new one does not.
        Returns what was fitted (`DescriptorFit`)."""
        assert self.descriptor_head is not None, "built without music_descriptors"
        if len(statistics) < 3:
            raise ValueError(f"fitting the descriptor head needs at least 3 clips, got {len(statistics)}")
        candidate_inputs = dict(candidate_inputs or {})
        for name, inputs in candidate_inputs.items():
            if name not in DESCRIPTORS or not inputs or not set(inputs) <= set(DESCRIPTOR_INPUTS):
                raise ValueError(f"candidate inputs {name}: {list(inputs)}: descriptors are {DESCRIPTORS}, inputs "
                                 f"a non-empty subset of {DESCRIPTOR_INPUTS}")
        if domains is not None and len(set(domains)) > 1:
            names = sorted(set(domains))
            fold, folds = torch.tensor([names.index(domain) for domain in domains]), len(names)
        else:
            folds = min(folds, len(statistics))
            fold = torch.arange(len(statistics)) % folds
        norm, linear = self.descriptor_head
        x = statistics.double()
        mean, var = x.mean(0), x.var(0, unbiased=False)
        x = (x - mean) / (var + norm.eps).sqrt()
        y = self.normalize_descriptors(descriptors).double()
        fit = DescriptorFit(clips=len(x), folds=folds, inputs=[], ridge=[], correlation=[], spread_factor=[])
        pixels = torch.arange(x.shape[1]) >= x.shape[1] - FRAME_STATISTICS
        first_pixel = x.shape[1] - FRAME_STATISTICS

        def named(names: tp.Sequence[str]) -> torch.Tensor:
            chosen = torch.zeros_like(pixels)
            chosen[[first_pixel + FRAME_STATISTIC_NAMES.index(name) for name in names]] = True
            return chosen
        columns = {"highlights": named(HIGHLIGHT_STATISTICS), "motion": named(MOTION_STATISTICS), "pixels": pixels,
                   "tokens": ~pixels, "both": torch.ones_like(pixels)}
        weight, bias = torch.zeros(y.shape[1], x.shape[1], dtype=torch.float64), y.mean(0)
        for c in range(y.shape[1]):
            allowed = candidate_inputs.get(DESCRIPTORS[c], DESCRIPTOR_INPUTS)
            candidates = [(inputs, ridge) for inputs in DESCRIPTOR_INPUTS if inputs in allowed for ridge in ridges]
            held_out = {key: torch.empty(len(x), dtype=torch.float64) for key in candidates}
            for k in range(folds):
                train = fold != k
                for inputs, ridge in candidates:
                    part = x[:, columns[inputs]]
                    w, b = ridge_regression(part[train], y[train, c], ridge)
                    held_out[inputs, ridge][~train] = part[~train] @ w + b
            squared = {key: (predictions - y[:, c]).pow(2) for key, predictions in held_out.items()}
            best = min(candidates, key=lambda key: float(squared[key].mean()))
            bound = float(squared[best].mean() + squared[best].std() / len(x) ** 0.5)
            chosen = next(key for key in candidates if float(squared[key].mean()) <= bound)
            predictions = held_out[chosen]
            correlation = float(torch.corrcoef(torch.stack([predictions, y[:, c]]))[0, 1])
            factor = min(max_spread_factor, float(y[:, c].std() / predictions.std().clamp(min=1e-6)))
            if not correlation > 3 / len(x) ** 0.5:
                factor = 0.0  # within three standard errors of none (the ridge was chosen on the same folds): the
                # picture does not tell, predict the mean
            inputs, ridge = chosen
            w, _ = ridge_regression(x[:, columns[inputs]], y[:, c], ridge)
            weight[c, columns[inputs]] = factor * w  # x is centred over the clips: the read-out keeps the mean as bias
            fit.inputs.append(inputs)
            fit.ridge.append(ridge)
            fit.correlation.append(correlation)
            fit.spread_factor.append(factor)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
        self.descriptor_fit_clips.fill_(len(x))
        return fit

    def embed_descriptors(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Descriptors on the unit scale `[B, N]` -> their embedding `[B, 1, output_dim]`, a condition the LM adds
        to its input at every step (AudioCraft's fuser, `sum`). Added to the video memory instead, the descriptors
        reached the LM through cross-attention over tokens of the picture, and a look unlike the training set's
        changed what the LM read of them."""
        assert self.descriptor_embedding is not None, "built without music_descriptors"
        return self.descriptor_embedding(descriptors.to(self.descriptor_embedding[0].weight))[:, None]

    def forward(self, local: torch.Tensor, glob: torch.Tensor, local_times: tp.Optional[torch.Tensor] = None,
                local_lengths: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Local and global frames (uint8 `[B, 3, T, H, W]`) or their CLIP tokens (`[B, T, P, D]`) -> memory
        `[B, T * P, output_dim]` (see `fuse`)."""
        return self.fuse(self.tokens(local), self.tokens(glob), local_times, local_lengths)
