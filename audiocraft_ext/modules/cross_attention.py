"""Cross-attention over a fixed memory with its keys/values computed once per streaming session.

AudioCraft's `StreamingMultiheadAttention` projects the cross-attention keys and values at every decoding step
(its own comment says they could be saved). With VidMuse's ~3000-token video memory this projection costs far
more than the rest of a step. `CachedCrossAttention` computes them at the first step of a streaming session,
keeps them in the module's streaming state, and reuses them until the state is reset: the outputs are the same.
It also takes a key padding mask, so that a batch can mix memories of different lengths.
"""

import typing as tp

from audiocraft.modules.transformer import StreamingMultiheadAttention, StreamingTransformer
from einops import rearrange
import torch
from torch.nn import functional as F


class CachedCrossAttention(StreamingMultiheadAttention):
    """A `StreamingMultiheadAttention` (custom implementation, `cross_attention=True`) with cached memory K/V.

    Build it with `CachedCrossAttention.convert(module)`, which changes the class of an existing module in place
    (parameters are kept). Set `key_padding_mask` (bool `[B, S]`, True = attend) before a forward to hide padded
    memory positions; `None` attends to all of them.
    """
    key_padding_mask: tp.Optional[torch.Tensor] = None

    @classmethod
    def convert(cls, module: StreamingMultiheadAttention) -> "CachedCrossAttention":
        if not (module.cross_attention and module.custom):
            raise ValueError("only custom cross-attention modules can cache their keys and values")
        module.__class__ = cls
        assert isinstance(module, CachedCrossAttention)
        module.key_padding_mask = None
        return module

    def restore(self) -> StreamingMultiheadAttention:
        """Turn this module back into AudioCraft's `StreamingMultiheadAttention` (no cache, no padding mask)."""
        self.__class__ = StreamingMultiheadAttention  # type: ignore[assignment]
        return self

    def _project_memory(self, memory: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `[B, H, S, D / H]` of the memory `[B, S, D]`, in one matrix product."""
        dim = self.embed_dim
        bias = self.in_proj_bias
        k, v = F.linear(memory, self.in_proj_weight[dim:], None if bias is None else bias[dim:]).split(dim, dim=-1)
        if self.qk_layer_norm:
            k = self.k_layer_norm(k)
        # Contiguous head-major copies: every decoding step then reads them sequentially (much faster SDPA).
        return (rearrange(k, "b s (h d) -> b h s d", h=self.num_heads).contiguous(),
                rearrange(v, "b s (h d) -> b h s d", h=self.num_heads).contiguous())

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,  # type: ignore[override]
                key_padding_mask=None, need_weights=False, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """`query` `[B, T, D]` attends to the memory `key` = `value` `[B, S, D]`; returns `(out [B, T, D], None)`."""
        assert key is value, "cross-attention memory: keys and values come from the same tensor"
        assert attn_mask is None and key_padding_mask is None and not need_weights
        dim = self.embed_dim
        bias = self.in_proj_bias
        q = F.linear(query, self.in_proj_weight[:dim], None if bias is None else bias[:dim])
        if self.qk_layer_norm:
            q = self.q_layer_norm(q)
        q = rearrange(q, "b t (h d) -> b h t d", h=self.num_heads)
        if self._is_streaming and "memory_keys" in self._streaming_state:
            k = self._streaming_state["memory_keys"]
            v = self._streaming_state["memory_values"]
        else:
            k, v = self._project_memory(key)
            if self._is_streaming:
                self._streaming_state["memory_keys"] = k
                self._streaming_state["memory_values"] = v
        dtype = query.dtype
        if self.attention_as_float32:
            q, k, v = q.float(), k.float(), v.float()
        mask = None
        if self.key_padding_mask is not None:
            mask = self.key_padding_mask.to(q.device)[:, None, None, :]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = rearrange(x.to(dtype), "b h t d -> b t (h d)")
        return self.out_proj(x), None


def cross_attention_modules(transformer: StreamingTransformer) -> tp.List[StreamingMultiheadAttention]:
    """The cross-attention module of every layer of an AudioCraft `StreamingTransformer`."""
    return [layer.cross_attention for layer in transformer.layers if getattr(layer, "cross_attention", None)]
