"""The VidMuse language model: AudioCraft's `LMModel` with a video memory for cross-attention.

The video condition does not fit AudioCraft's `ConditioningAttributes` (text / wav / joint embedding), so it
travels as a precomputed condition tensor named `video`, fused by AudioCraft's `ConditionFuser` as the
cross-attention source. An optional text description (AudioCraft's T5 conditioner, `description`) joins it in
the cross-attention memory. A model built with music descriptors adds their embedding (`music_descriptors`) to
its input at every step (the fuser's `sum`). Everything else (embeddings, streaming transformer, codebook
pattern, teacher-forced `compute_predictions`, the decoding loop of `generate`) is AudioCraft's own.
"""

from contextlib import contextmanager
from dataclasses import dataclass, replace
import typing as tp

from audiocraft.models.lm import ConditionTensors, LMModel, LMOutput
from audiocraft.modules.codebooks_patterns import CodebooksPatternProvider, Pattern
from audiocraft.modules.conditioners import ConditionFuser, ConditioningAttributes, ConditioningProvider
from audiocraft.modules.streaming import State
from audiocraft.utils import utils
import torch

from ..modules.cross_attention import CachedCrossAttention, MemoryRows, cross_attention_modules
from ..modules.int8 import Int8Linear, replace_linear_
from ..modules.self_attention import PreallocatedSelfAttention, self_attention_modules
from ..modules.text import TEXT_CONDITION
from ..modules.visual import VideoEncoder, VisualConfig

VIDEO_CONDITION = "video"
DESCRIPTOR_CONDITION = "music_descriptors"


@dataclass
class VideoBatch:
    """A batch of video conditions for one generation window.

    Attributes:
        local_frames: uint8 `[B, 3, T, H, W]` (or cached CLIP tokens `[B, T, P, D]`); items with fewer frames
            are padded at the end.
        global_frames: uint8 `[B, 3, Tg, H, W]` (or CLIP tokens `[B, Tg, P, D]`).
        local_lengths: `[B]` number of valid local frames per item (default: all T).
        local_times: `[B, T]` seconds of each local frame from the window start (default: k / local_fps).
        descriptions: optional text per item, for models with a text conditioner (None: no text).
        music_descriptors: optional `[B, N]` `music_descriptors` for a model built with `music_descriptors` to
            condition on: the music's own (teacher forcing in training) or those predicted from each item's whole
            video (`VidMuse.predict_music_descriptors`); rows of NaN, or None, take the ones it predicts from the
            window's frames.
    """
    local_frames: torch.Tensor
    global_frames: torch.Tensor
    local_lengths: tp.Optional[torch.Tensor] = None
    local_times: tp.Optional[torch.Tensor] = None
    descriptions: tp.Optional[tp.List[tp.Optional[str]]] = None
    music_descriptors: tp.Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.local_frames.shape[0]

    @property
    def num_local_frames(self) -> int:
        return self.local_frames.shape[2 if self.local_frames.dtype == torch.uint8 else 1]

    @property
    def texts(self) -> tp.List[tp.Optional[str]]:
        return list(self.descriptions) if self.descriptions is not None else [None] * len(self)

    def null(self) -> "VideoBatch":
        """The classifier-free guidance null condition: all-black frames (uint8 zeros), no text and no given
        descriptors (the model's own for black frames), same shapes and lengths."""
        if self.local_frames.dtype != torch.uint8:
            raise ValueError("the null video of a batch of CLIP tokens is the tokens of a black frame: build it "
                             "from frames")
        return VideoBatch(torch.zeros_like(self.local_frames), torch.zeros_like(self.global_frames),
                          self.local_lengths, self.local_times)

    def guidance_batch(self, null: "VideoBatch", descriptor_branch: bool = False) -> "VideoBatch":
        """The batches classifier-free guidance decodes together: `[self, null]` (2B items), or with
        `descriptor_branch` `[self, descriptors only, null]` (3B items; `VidMuseLM.cfg_coef_beta`), "descriptors
        only" being the `null` condition with this batch's `music_descriptors` (which must be given)."""
        if not descriptor_branch:
            return VideoBatch.cat([self, null])
        if self.music_descriptors is None or bool(self.music_descriptors.isnan().any()):
            raise ValueError("guidance with a descriptor branch needs the batch's music descriptors "
                             "(VideoBatch.music_descriptors)")
        return VideoBatch.cat([self, replace(null, descriptions=None, music_descriptors=self.music_descriptors), null])

    @staticmethod
    def cat(batches: tp.Sequence["VideoBatch"]) -> "VideoBatch":
        """Concatenate batches along the batch dimension (all must have the same frame counts)."""
        lengths = [b.local_lengths if b.local_lengths is not None
                   else torch.full((len(b),), b.num_local_frames) for b in batches]
        times = [b.local_times for b in batches]
        texts = [text for b in batches for text in b.texts]
        given = [b.music_descriptors for b in batches if b.music_descriptors is not None]
        descriptors = None
        if given:
            descriptors = torch.cat([b.music_descriptors if b.music_descriptors is not None
                                     else given[0].new_full((len(b), given[0].shape[1]), float("nan"))
                                     for b in batches])
        return VideoBatch(torch.cat([b.local_frames for b in batches]), torch.cat([b.global_frames for b in batches]),
                          torch.cat(lengths), None if any(t is None for t in times) else torch.cat(times),  # type: ignore
                          None if all(t is None for t in texts) else texts, descriptors)


def pad_frames(frames: tp.Sequence[torch.Tensor]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Batches of frames of different lengths (uint8 `[Bi, 3, Ti, H, W]` or tokens `[Bi, Ti, P, D]`) -> one batch
    zero-padded to the longest, and its `[sum Bi]` lengths."""
    axis = 2 if frames[0].dtype == torch.uint8 else 1
    longest = max(f.shape[axis] for f in frames)
    padded = []
    for f in frames:
        shape = list(f.shape)
        shape[axis] = longest - f.shape[axis]
        padded.append(torch.cat([f, f.new_zeros(shape)], dim=axis))
    return torch.cat(padded), torch.cat([torch.full((f.shape[0],), f.shape[axis]) for f in frames])


def check_cfg_coef_beta(cfg_coef_beta: tp.Optional[float], visual_config: tp.Optional[VisualConfig] = None
                        ) -> None:
    """`ValueError` unless `cfg_coef_beta` (double guidance, `VidMuseLM._sample_next_token`) is None, or >= 0 for
    a model built with music descriptors (its third branch keeps them); without `visual_config` (no model yet),
    the value alone is checked."""
    if cfg_coef_beta is None:
        return
    if cfg_coef_beta < 0:
        raise ValueError(f"cfg_coef_beta must be >= 0, got {cfg_coef_beta}")
    if visual_config is not None and not visual_config.music_descriptors:
        raise ValueError("cfg_coef_beta (double guidance) needs a model built with music descriptors")


def check_rerank_candidates(rerank_candidates: int, visual_config: tp.Optional[VisualConfig] = None) -> None:
    """`ValueError` unless `rerank_candidates` (draws per video, `VidMuse.generate`) is an integer >= 1, and 1 for a
    model built without music descriptors (the draws are ranked by them); without `visual_config` (no model yet),
    the count alone is checked."""
    if isinstance(rerank_candidates, bool) or not isinstance(rerank_candidates, int) or rerank_candidates < 1:
        raise ValueError(f"rerank_candidates must be an integer >= 1, got {rerank_candidates!r}")
    if rerank_candidates > 1 and visual_config is not None and not visual_config.music_descriptors:
        raise ValueError(f"rerank_candidates {rerank_candidates} needs a model built with music descriptors "
                         "(the draws are ranked by them)")


@dataclass
class _GenerationState:
    """What `VidMuseLM.generate` hands to its decoding steps."""
    conditions: ConditionTensors  # [cond, null] or [cond, descriptors only, null] condition tensors
    cfg_coef_beta: tp.Optional[float]  # None: guidance on [cond, null]
    generators: tp.Optional[tp.Sequence[torch.Generator]]
    pattern: Pattern
    lengths: tp.Optional[torch.Tensor]  # [B] timesteps per item
    offset: int = 0  # pattern steps fed so far


def mean_token_log_likelihood(logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean log-probability per item of codes `[B, K, T]` under logits `[B, K, T, card]`, over the positions
    where the bool `mask` `[B, K, T]` is set: `[B]` (differentiable; 0 for an item with no position). Only the
    masked positions are read: elsewhere the LM's logits are NaN (no token in the delay pattern) or the codes
    may be the padding token (out of the vocabulary)."""
    scores = torch.zeros(mask.shape, device=logits.device)
    scores[mask] = -torch.nn.functional.cross_entropy(logits[mask].float(), codes[mask].long(), reduction="none")
    return scores.sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)


def sample_next_token(logits: torch.Tensor, use_sampling: bool = True, temp: float = 1.0, top_k: int = 0,
                      top_p: float = 0.0, generators: tp.Optional[tp.Sequence[torch.Generator]] = None
                      ) -> torch.Tensor:
    """Pick the next token from logits `[B, K, card]` -> `[B, K, 1]`.

    Greedy when `use_sampling` is False or `temp` is 0; otherwise top-p (if > 0), else top-k (clamped to the
    vocabulary), else plain sampling. Item b draws from `generators[b]` when given (the global RNG otherwise),
    so its tokens do not depend on the other items of the batch.
    """
    if not use_sampling or temp <= 0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = torch.softmax(logits / temp, dim=-1)
    indices = None
    if top_p > 0.0:
        probs, indices = torch.sort(probs, dim=-1, descending=True)
        cumulative = torch.cumsum(probs, dim=-1)
        probs = probs * (cumulative - probs <= top_p).float()
    elif top_k > 0:
        k = min(top_k, probs.shape[-1])
        kth_value = torch.topk(probs, k, dim=-1).values[..., [-1]]
        probs = probs * (probs >= kth_value).float()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    if generators is None:
        tokens = utils.multinomial(probs, num_samples=1)
    else:
        if len(generators) != probs.shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {probs.shape[0]}")
        tokens = torch.stack([utils.multinomial(p, num_samples=1, generator=g) for p, g in zip(probs, generators)])
    if indices is not None:
        tokens = torch.gather(indices, -1, tokens)
    return tokens


@contextmanager
def _attribute_during(modules: tp.Sequence[torch.nn.Module], name: str, value: tp.Any, reset: tp.Any = None):
    """Set attribute `name` of each module to `value` for the duration of a `with` block, then to `reset`."""
    for module in modules:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module in modules:
            setattr(module, name, reset)


class VidMuseLM(LMModel):
    """AudioCraft `LMModel` whose cross-attention memory is a video embedding.

    Args:
        pattern_provider, condition_provider, fuser: as `LMModel`; the fuser must route `video` to `cross`
            (and, with music descriptors, `music_descriptors` to `sum`).
        visual_config: the visual side (`VisualConfig`).
        cfg_coef_beta: for a model built with music descriptors, double classifier-free guidance by default
            (None: plain guidance on the video; see `_sample_next_token`).
        rerank_candidates: for a model built with music descriptors, the draws per video `VidMuse.generate`
            makes by default, of which it keeps the one nearest its descriptors (1: the plain draw).
        **kwargs: `LMModel` arguments (n_q, card, dim, num_heads, ...). Cross-attention is always on.
    """

    def __init__(self, pattern_provider: CodebooksPatternProvider, condition_provider: ConditioningProvider,
                 fuser: ConditionFuser, visual_config: VisualConfig, cfg_coef_beta: tp.Optional[float] = None,
                 rerank_candidates: int = 1, **kwargs):
        check_cfg_coef_beta(cfg_coef_beta, visual_config)
        check_rerank_candidates(rerank_candidates, visual_config)
        for name in [VIDEO_CONDITION, *condition_provider.conditioners]:
            if fuser.cond2fuse.get(name) != "cross":
                raise ValueError(f"the fuser must fuse the '{name}' condition by cross-attention")
        if visual_config.music_descriptors and fuser.cond2fuse.get(DESCRIPTOR_CONDITION) != "sum":
            raise ValueError(f"the fuser must add the '{DESCRIPTOR_CONDITION}' condition to the input (sum)")
        kwargs["cross_attention"] = True
        factory = {k: kwargs[k] for k in ("device", "dtype") if k in kwargs}
        super().__init__(pattern_provider, condition_provider, fuser, **kwargs)
        self.video_encoder = VideoEncoder(visual_config, self.dim).to(**factory)
        self.cfg_coef_beta = cfg_coef_beta
        self.rerank_candidates = rerank_candidates
        self._generation: tp.Optional[_GenerationState] = None
        self.deduplicate_memory = True
        self._streamed_predictions = False
        self.set_cross_attention_cache(True)
        self.set_preallocated_kv_cache(True)

    @property
    def visual_config(self) -> VisualConfig:
        return self.video_encoder.config

    def set_cross_attention_cache(self, enabled: bool):
        """Use `CachedCrossAttention` (K/V of the memory computed once per generation) or AudioCraft's module.

        Both give the same outputs; the uncached path exists to check that and to measure the speed-up.
        """
        for module in cross_attention_modules(self.transformer):
            if enabled and not isinstance(module, CachedCrossAttention):
                CachedCrossAttention.convert(module)
            elif not enabled and isinstance(module, CachedCrossAttention):
                module.restore()

    def set_preallocated_kv_cache(self, enabled: bool):
        """Decode with `PreallocatedSelfAttention` (keys/values written in place) or AudioCraft's module (the
        cache concatenated at every step). Both give the same codes."""
        for module in self_attention_modules(self.transformer):
            if enabled and not isinstance(module, PreallocatedSelfAttention):
                PreallocatedSelfAttention.convert(module)
            elif not enabled and isinstance(module, PreallocatedSelfAttention):
                module.restore()

    def set_decoding_formats(self, memory_dtype: tp.Optional[torch.dtype] = None,
                             kv_cache_dtype: tp.Optional[torch.dtype] = None):
        """Dtypes of the cached video-memory keys/values and of the self-attention cache during generation
        (None: the dtype the layers compute in)."""
        for module in cross_attention_modules(self.transformer):
            if isinstance(module, CachedCrossAttention):
                module.memory_dtype = memory_dtype
        for module in self_attention_modules(self.transformer):
            if isinstance(module, PreallocatedSelfAttention):
                module.kv_cache_dtype = kv_cache_dtype

    def decoding_formats(self) -> tp.Tuple[tp.Optional[torch.dtype], tp.Optional[torch.dtype]]:
        """`(memory_dtype, kv_cache_dtype)` as set by `set_decoding_formats`."""
        cross = self.transformer.layers[0].cross_attention
        self_attn = self.transformer.layers[0].self_attn
        return getattr(cross, "memory_dtype", None), getattr(self_attn, "kv_cache_dtype", None)

    @torch.no_grad()
    def quantize_(self, release: tp.Callable[[torch.Tensor], None] = lambda tensor: None):
        """Int8 decoding on CPU: every linear layer of the transformer and the output heads run in int8
        (`modules.int8`); embeddings, norms and the video encoder keep their dtype. `release` gets each float
        weight once it is consumed (the loader frees its memory-mapped pages). Inference only, irreversible."""
        self.set_cross_attention_cache(True)
        self.set_preallocated_kv_cache(True)
        for layer in self.transformer.layers:
            layer.self_attn.quantize_(release)
            layer.cross_attention.quantize_(release)
            if layer.activation is torch.nn.functional.gelu:  # fused into the kernel of linear1
                replace_linear_(layer, "linear1", release, activation="gelu")
                layer.activation = torch.nn.Identity()
            else:
                replace_linear_(layer, "linear1", release)
            replace_linear_(layer, "linear2", release)
        for k in range(len(self.linears)):
            replace_linear_(self.linears, str(k), release)

    @property
    def is_int8(self) -> bool:
        return any(isinstance(module, Int8Linear) for module in self.linears)

    @property
    def weight_format(self) -> str:
        """'int8', or the dtype name of the transformer's weights ('float32', 'bfloat16', ...)."""
        return "int8" if self.is_int8 else str(self.linears[0].weight.dtype).removeprefix("torch.")

    @property
    def has_text_conditioner(self) -> bool:
        return TEXT_CONDITION in self.condition_provider.conditioners

    def compute_video_condition(self, video: VideoBatch, with_null: bool = False,
                                descriptor_branch: bool = False) -> ConditionTensors:
        """Video memory (and text) as AudioCraft condition tensors: `{'video': (memory [B, S, dim], mask [B, S])}`
        plus `'description': (embeddings [B, L, dim], mask [B, L])` for a model with a text conditioner.

        With `with_null`, the batch is `VideoBatch.guidance_batch` (null = black frames and no text; with
        `descriptor_branch`, the descriptors-only branch too), computed in one pass, as classifier-free guidance
        needs it.
        """
        return self.video_condition(video, with_null, descriptor_branch)[0]

    def video_condition(self, video: VideoBatch, with_null: bool = False, descriptor_branch: bool = False
                        ) -> tp.Tuple[ConditionTensors, tp.Optional[torch.Tensor]]:
        """`compute_video_condition`, and for a model built with `music_descriptors` the descriptors it predicts
        from the window's frames, on the unit scale `[B, N]` (None otherwise, and when `video.music_descriptors`
        gives them all: a batch of CLIP tokens must give them).
        Their condition (`music_descriptors`, `[B, 1, dim]`) embeds `video.music_descriptors` where given, the
        predicted ones elsewhere."""
        if not self.has_text_conditioner and any(text is not None for text in video.texts):
            raise ValueError("this model has no text conditioner: descriptions cannot be used")
        if with_null:
            video = video.guidance_batch(video.null(), descriptor_branch)
        device = next(iter(self.parameters())).device
        encoder = self.video_encoder
        local_tokens, global_tokens = (encoder.tokens(frames.to(device))
                                       for frames in (video.local_frames, video.global_frames))
        memory = encoder.fuse(local_tokens, global_tokens, video.local_times, video.local_lengths)
        B, T = len(video), video.num_local_frames
        if video.local_lengths is None:
            mask = torch.ones(B, memory.shape[1], dtype=torch.bool, device=device)
        else:
            frame_valid = torch.arange(T, device=device)[None, :] < video.local_lengths.to(device)[:, None]
            mask = frame_valid.repeat_interleave(encoder.tokens_per_frame, dim=1)
        conditions: ConditionTensors = {VIDEO_CONDITION: (memory, mask)}
        predicted = None
        if self.visual_config.music_descriptors:
            given = None if video.music_descriptors is None \
                else encoder.normalize_descriptors(video.music_descriptors.to(device))
            if given is None or bool(given.isnan().any()):
                if video.local_frames.dtype != torch.uint8:
                    raise ValueError("the music descriptors of a batch of CLIP tokens cannot be predicted (the "
                                     "read-out also reads the pixels): give them (VideoBatch.music_descriptors)")
                predicted = encoder.predict_descriptors(global_tokens, local_tokens, video.local_frames.to(device),
                                                        video.local_lengths)
            if predicted is None:
                used = given
            elif given is None:
                used = predicted
            else:
                used = torch.where(given.isnan(), predicted, given.to(predicted))
            conditions[DESCRIPTOR_CONDITION] = (encoder.embed_descriptors(used), torch.ones(B, 1, device=device))
        if self.has_text_conditioner:
            conditioner = self.condition_provider.conditioners[TEXT_CONDITION]
            conditioner.device = device  # where tokens are put
            frozen_t5 = conditioner.__dict__.get("t5")  # AudioCraft keeps a frozen hub T5 out of the module tree
            if frozen_t5 is not None:
                frozen_t5.to(device)
            attributes = [ConditioningAttributes(text={TEXT_CONDITION: text}) for text in video.texts]
            conditions.update(self.condition_provider(self.condition_provider.tokenize(attributes)))
        return conditions, predicted

    def _cross_conditions(self, condition_tensors: ConditionTensors) -> tp.List[tp.Tuple[torch.Tensor, torch.Tensor]]:
        """(memory, mask) of each condition fused by cross-attention, in the order AudioCraft's fuser joins them."""
        return [condition for name, condition in condition_tensors.items() if self.fuser.cond2fuse[name] == "cross"]

    def _cross_attention_mask(self, condition_tensors: ConditionTensors) -> tp.Optional[torch.Tensor]:
        """Key padding mask `[B, S]` of the concatenated cross-attention memory, None when nothing is padded."""
        mask = torch.cat([mask for _, mask in self._cross_conditions(condition_tensors)], dim=1).bool()
        return None if bool(mask.all()) else mask

    def _streaming_memory_rows(self, condition_tensors: ConditionTensors):
        """During generation, each cross-attention reads the distinct valid rows of each item's memory."""
        memory = torch.cat([memory for memory, _ in self._cross_conditions(condition_tensors)], dim=1)
        rows = MemoryRows.build(memory, self._cross_attention_mask(condition_tensors),
                                deduplicate=self.deduplicate_memory)
        modules = [m for m in cross_attention_modules(self.transformer) if isinstance(m, CachedCrossAttention)]
        return _attribute_during(modules, "memory_rows", rows)

    def _kv_capacity(self, capacity: int):
        modules = [m for m in self_attention_modules(self.transformer) if isinstance(m, PreallocatedSelfAttention)]
        return _attribute_during(modules, "kv_capacity", capacity, reset=0)

    def _memory_mask(self, mask: tp.Optional[torch.Tensor]):
        modules = [m for m in cross_attention_modules(self.transformer) if isinstance(m, CachedCrossAttention)]
        if mask is not None and len(modules) != len(cross_attention_modules(self.transformer)):
            raise RuntimeError("a padded video batch needs the cached cross-attention (key padding mask)")
        return _attribute_during(modules, "key_padding_mask", mask)

    def forward(self, sequence: torch.Tensor, conditions: tp.List, condition_tensors: tp.Optional[ConditionTensors]
                = None, stage: int = -1) -> torch.Tensor:
        """`LMModel.forward` with the key padding mask of the video memory applied: `[B, K, S]` -> `[B, K, S, card]`."""
        if condition_tensors is None or VIDEO_CONDITION not in condition_tensors:
            raise ValueError("VidMuseLM needs the video condition tensors (see compute_video_condition)")
        if self._streamed_predictions:
            steps = sequence.shape[-1]
            with self.streaming(), self._streaming_memory_rows(condition_tensors), self._kv_capacity(steps):
                return torch.cat([super(VidMuseLM, self).forward(sequence[..., s:s + 1], conditions,
                                                                 condition_tensors, stage)
                                  for s in range(steps)], dim=2)
        with self._memory_mask(self._cross_attention_mask(condition_tensors)):
            return super().forward(sequence, conditions, condition_tensors, stage)

    def compute_predictions_streamed(self, codes: torch.Tensor, condition_tensors: ConditionTensors) -> LMOutput:
        """`compute_predictions` along the generation path: the pattern sequence goes through the streaming
        modules one step at a time, with the memory rows, caches and weight formats that `generate` uses.

        Args:
            codes: `[B, K, T]` codes to score.
            condition_tensors: their conditions (e.g. `compute_video_condition`).
        Returns:
            AudioCraft's `LMOutput`: logits `[B, K, T, card]` and mask `[B, K, T]`.
        """
        self._streamed_predictions = True
        try:
            return self.compute_predictions(codes, [], condition_tensors=condition_tensors)
        finally:
            self._streamed_predictions = False

    def _sample_next_token(self, sequence: torch.Tensor, cfg_conditions, unconditional_state: State,
                           use_sampling: bool = False, temp: float = 1.0, top_k: int = 0, top_p: float = 0.0,
                           cfg_coef: tp.Optional[float] = None, two_step_cfg: tp.Optional[bool] = None
                           ) -> torch.Tensor:
        """One decoding step with classifier-free guidance on the video: `[B, K, S]` -> next tokens `[B, K, 1]`.

        The batch is `[cond, null]`; guided logits are `null + (cond - null) * cfg_coef` (as the release). With
        `cfg_coef_beta` (double guidance, as MusicGen-Style's), it is `[cond, descriptors only, null]` and the
        logits are `null + cfg_coef * (desc + cfg_coef_beta * (cond - desc) - null)`: the music descriptors are
        guided by `cfg_coef`, what the picture adds to them by `cfg_coef * cfg_coef_beta`.
        """
        state = self._generation
        assert state is not None, "call generate()"
        B = sequence.shape[0]
        cfg_coef = self.cfg_coef if cfg_coef is None else cfg_coef
        branches = 2 if state.cfg_coef_beta is None else 3
        all_logits = self(torch.cat([sequence] * branches, dim=0), [], state.conditions)
        if state.cfg_coef_beta is None:
            cond_logits, null_logits = all_logits.split(B, dim=0)
        else:
            cond_logits, desc_logits, null_logits = all_logits.split(B, dim=0)
            cond_logits = desc_logits + (cond_logits - desc_logits) * state.cfg_coef_beta
        logits = null_logits + (cond_logits - null_logits) * cfg_coef  # [B, K, S, card]
        tokens = sample_next_token(logits[:, :, -1], use_sampling, temp, top_k, top_p, state.generators)
        state.offset += sequence.shape[-1]  # the pattern step these tokens fill
        if state.lengths is not None and state.offset < len(state.pattern.layout):
            # Past an item's own length its sequence holds the special token, as when it is generated alone:
            # later codebooks of its last timesteps then see the same context at any batch composition.
            for t, q in state.pattern.layout[state.offset]:
                tokens[state.lengths <= t, q] = self.special_token_id
        return tokens

    @torch.no_grad()
    def generate(self, prompt: tp.Optional[torch.Tensor] = None, conditions: tp.List = [],  # type: ignore[override]
                 num_samples: tp.Optional[int] = None, max_gen_len: int = 256, use_sampling: bool = True,
                 temp: float = 1.0, top_k: int = 250, top_p: float = 0.0, cfg_coef: tp.Optional[float] = None,
                 cfg_coef_beta: tp.Optional[float] = None,
                 two_step_cfg: tp.Optional[bool] = None, remove_prompts: bool = False, check: bool = False,
                 callback: tp.Optional[tp.Callable[[int, int], None]] = None, *,
                 video: tp.Optional[VideoBatch] = None, cfg_condition_tensors: tp.Optional[ConditionTensors] = None,
                 generators: tp.Optional[tp.Sequence[torch.Generator]] = None,
                 lengths: tp.Optional[tp.Sequence[int]] = None, **kwargs) -> torch.Tensor:
        """Generate codes `[B, K, max_gen_len]` for a batch of videos (AudioCraft's decoding loop).

        Args:
            prompt: optional codes `[B, K, T]` to continue.
            video: the video conditions; or
            cfg_coef_beta: double guidance (`_sample_next_token`; default: the model's `cfg_coef_beta`).
            cfg_condition_tensors: precomputed guidance condition tensors (`[cond, null]`, 2B items, or with
                `cfg_coef_beta` `[cond, descriptors only, null]`, 3B), e.g. from `compute_video_condition(video,
                with_null=True, descriptor_branch=...)`, to reuse one memory across calls.
            generators: one `torch.Generator` per item for sampling (see `sample_next_token`).
            lengths: timesteps each item needs (default: all `max_gen_len`); an item's codes then do not depend
                on the longer items of the batch (its codes past its length are not meaningful).
            Other arguments as `LMModel.generate`. Text comes with the video (`VideoBatch.descriptions`);
            two-step CFG is not supported.
        """
        if (video is None) == (cfg_condition_tensors is None):
            raise ValueError("VidMuseLM.generate needs exactly one of `video` or `cfg_condition_tensors`")
        if conditions or two_step_cfg:
            raise ValueError("VidMuseLM.generate takes the video condition only (no attributes, no two-step CFG)")
        cfg_coef_beta = self.cfg_coef_beta if cfg_coef_beta is None else cfg_coef_beta
        check_cfg_coef_beta(cfg_coef_beta, self.visual_config)
        if cfg_condition_tensors is None:
            assert video is not None
            cfg_condition_tensors = self.compute_video_condition(video, with_null=True,
                                                                 descriptor_branch=cfg_coef_beta is not None)
        branches = 2 if cfg_coef_beta is None else 3
        batch = cfg_condition_tensors[VIDEO_CONDITION][0].shape[0] // branches
        device = cfg_condition_tensors[VIDEO_CONDITION][0].device
        self._generation = _GenerationState(
            cfg_condition_tensors, cfg_coef_beta, generators, self.pattern_provider.get_pattern(max_gen_len),
            None if lengths is None else torch.tensor(list(lengths), device=device))
        steps = len(self._generation.pattern.layout) - 1  # positions the decoding loop feeds (prompt included)
        try:
            with self._streaming_memory_rows(cfg_condition_tensors), self._kv_capacity(steps):
                return super().generate(prompt, [], num_samples=batch, max_gen_len=max_gen_len,
                                        use_sampling=use_sampling, temp=temp, top_k=top_k, top_p=top_p,
                                        cfg_coef=cfg_coef, two_step_cfg=False, remove_prompts=remove_prompts,
                                        check=check, callback=callback)
        finally:
            self._generation = None
