"""Causal self-attention whose streaming key/value cache is preallocated and written in place.

AudioCraft's `StreamingMultiheadAttention` concatenates the whole key/value cache with the new step at every
decoding step, so late in a 30 s window each step copies ~1500 past positions per layer before attending to
them. `PreallocatedSelfAttention` keeps keys and values in buffers sized once for the whole generation
(`kv_capacity` positions, set before streaming starts) and writes each step's keys and values in place: a step
reads the cache once and copies nothing. The buffers keep their address for the whole session, as a captured
(CUDA-graph) decoding step would need. Outside streaming (training, teacher forcing) AudioCraft's forward runs
unchanged.
"""

import typing as tp

from audiocraft.modules.transformer import StreamingMultiheadAttention, StreamingTransformer
import torch
from torch.nn import functional as F

from .attention import SwappedAttention
from .int8 import Int8Linear, replace_linear_


class PreallocatedSelfAttention(SwappedAttention):
    """A causal self-attention `StreamingMultiheadAttention` (custom, torch SDPA layout) with an in-place cache.

    Build it with `PreallocatedSelfAttention.convert(module)` (the class of the module changes in place, its
    parameters stay). Attributes set by the caller before streaming:
        kv_capacity: positions to allocate for a streaming session (a longer session grows the buffers once).
        kv_cache_dtype: dtype of the cached keys/values (None: the computation's dtype).
    After `quantize_()`, the input projection runs in int8 (`in_proj_int8`) and `in_proj_weight` is gone.
    """
    kv_capacity: int = 0
    kv_cache_dtype: tp.Optional[torch.dtype] = None
    int8_module = "in_proj_int8"

    @classmethod
    def convert(cls, module: StreamingMultiheadAttention) -> "PreallocatedSelfAttention":
        if module.cross_attention or not module.causal or not module.custom:
            raise ValueError("only custom causal self-attention modules can use a preallocated cache")
        if module.rope is not None or module.kv_repeat != 1 or module.past_context is not None:
            raise ValueError("rotary embeddings, repeated kv heads and a limited past context are not supported")
        if not module.memory_efficient:
            raise ValueError("the preallocated cache follows the torch SDPA layout (memory_efficient=True)")
        module.__class__ = cls
        assert isinstance(module, PreallocatedSelfAttention)
        return module

    def quantize_(self, release: tp.Callable[[torch.Tensor], None] = lambda tensor: None):
        """Run the input and output projections in int8; `release` gets each float weight once it is consumed."""
        weight = self.in_proj_weight
        self.in_proj_int8 = Int8Linear.from_float(weight, self.in_proj_bias)
        del self.in_proj_weight, self.in_proj_bias
        self.in_proj_bias = None
        release(weight)
        replace_linear_(self, "out_proj", release)

    def _in_projection(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_int8:
            return self.in_proj_int8(x)
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)

    def _cache(self, batch: int, needed: int, like: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """The key and value buffers `[B, H, capacity, D / H]`, allocated (or grown) to hold `needed` positions."""
        state = self._streaming_state
        keys = state.get("cache_keys")
        if keys is not None and keys.shape[2] >= needed:
            return keys, state["cache_values"]
        capacity = max(needed, self.kv_capacity, 0 if keys is None else 2 * keys.shape[2])
        dtype = self.kv_cache_dtype or like.dtype
        shape = (batch, self.num_heads, capacity, self.embed_dim // self.num_heads)
        new_keys = torch.empty(shape, dtype=dtype, device=like.device)
        new_values = torch.empty(shape, dtype=dtype, device=like.device)
        if keys is not None:
            length = state["cache_length"]
            new_keys[:, :, :length] = keys[:, :, :length]
            new_values[:, :, :length] = state["cache_values"][:, :, :length]
        state["cache_keys"], state["cache_values"] = new_keys, new_values
        return new_keys, new_values

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,  # type: ignore[override]
                key_padding_mask=None, need_weights=False, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """`query` `[B, T, D]` (= key = value) -> `(out [B, T, D], None)`. Streaming: its keys and values are
        appended to the cache. Not streaming: AudioCraft's forward (float weights) or the same causal attention
        over the chunk (int8)."""
        if not self._is_streaming and not self.is_int8:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        assert attn_mask is None and key_padding_mask is None and not need_weights
        B, T, _ = query.shape
        head_dim = self.embed_dim // self.num_heads
        # [B, T, (3 H d)] -> 3 x [B, H, T, d]: plain views, this runs 48 times per decoding step
        q, k, v = self._in_projection(query).view(B, T, 3, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        past = 0
        if self._is_streaming:
            state = self._streaming_state
            past = state.get("cache_length", 0)
            keys, values = self._cache(B, past + T, q)
            keys[:, :, past:past + T] = k
            values[:, :, past:past + T] = v
            state["cache_length"] = past + T  # a Python int: no tensor or sync per step
            k, v = keys[:, :, :past + T], values[:, :, :past + T]
        mask = None
        if T > 1 and past > 0:  # a chunk after cached steps: causal within the chunk, all of the past visible
            mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(past)
        dtype = query.dtype
        x = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask, is_causal=T > 1 and past == 0)
        x = x.to(dtype).transpose(1, 2).reshape(B, T, self.embed_dim)
        return self.out_proj(x), None


def self_attention_modules(transformer: StreamingTransformer) -> tp.List[StreamingMultiheadAttention]:
    """The self-attention module of every layer of an AudioCraft `StreamingTransformer`."""
    return [layer.self_attn for layer in transformer.layers]
