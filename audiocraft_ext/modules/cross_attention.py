"""Cross-attention over a fixed memory with its keys/values computed once per streaming session.

AudioCraft's `StreamingMultiheadAttention` projects the cross-attention keys and values at every decoding step
(its own comment says they could be saved). With VidMuse's ~3000-token video memory this projection costs far
more than the rest of a step. `CachedCrossAttention` computes them at the first step of a streaming session,
keeps them in the module's streaming state, and reuses them until the state is reset: the outputs are the same.
It also takes a key padding mask, so that a batch can mix memories of different lengths.

In generation the memory is also read through `MemoryRows`: each item attends to its distinct valid rows only,
each once, with a log(count) bias on its score, which gives the same softmax as attending to every copy. The
null video of classifier-free guidance repeats the same black-frame tokens in every frame, so its keys and
values shrink by the number of frames.
"""

from dataclasses import dataclass
import typing as tp

from audiocraft.modules.transformer import StreamingMultiheadAttention, StreamingTransformer
from einops import rearrange
import torch
from torch.nn import functional as F

from .attention import SwappedAttention
from .int8 import Int8Linear, Int8Weight, replace_linear_


@dataclass
class MemoryGroup:
    """Items whose memories have the same number of distinct valid rows.

    Attributes:
        items: `[G]` batch indices.
        rows: `[G, S]` memory positions of each item's distinct valid rows, in memory order.
        bias: `[G, S]` log of each row's count (None when every row appears once).
        batch_slice: the same items as a slice of the batch, when they are consecutive (a view, not a copy).
    """
    items: torch.Tensor
    rows: torch.Tensor
    bias: tp.Optional[torch.Tensor]
    batch_slice: tp.Optional[slice] = None


@dataclass
class MemoryRows:
    """The rows of a cross-attention memory `[B, S, D]` that generation attends to, item by item."""
    groups: tp.List[MemoryGroup]
    batch: int

    @property
    def in_batch_order(self) -> bool:
        """Whether the groups are consecutive slices that cover the batch in order (outputs just concatenate)."""
        start = 0
        for group in self.groups:
            if group.batch_slice is None or group.batch_slice.start != start:
                return False
            start = group.batch_slice.stop
        return start == self.batch

    @property
    def total_rows(self) -> int:
        return sum(group.rows.numel() for group in self.groups)

    @classmethod
    def build(cls, memory: torch.Tensor, mask: tp.Optional[torch.Tensor] = None,
              deduplicate: bool = True) -> "MemoryRows":
        """Distinct valid rows of each item of `memory` `[B, S, D]` (valid where the bool `mask` `[B, S]` is set).

        Without `deduplicate`, every valid row is kept (the padding is still dropped).
        """
        B, S = memory.shape[:2]
        per_item = []
        for b in range(B):
            positions = torch.arange(S, device=memory.device)
            if mask is not None:
                positions = positions[mask[b].to(memory.device)]
            counts = torch.ones(len(positions), dtype=torch.long, device=memory.device)
            if deduplicate:
                _, inverse, counts = torch.unique(memory[b, positions], dim=0, return_inverse=True,
                                                  return_counts=True)
                first = torch.full((len(counts),), S, dtype=torch.long, device=memory.device)
                first = first.scatter_reduce(0, inverse, torch.arange(len(positions), device=memory.device), "amin")
                order = torch.argsort(first)
                positions, counts = positions[first[order]], counts[order]
            per_item.append((positions, counts))
        groups = []
        sizes = {len(positions): b for b, (positions, _) in reversed(list(enumerate(per_item)))}  # size -> first item
        for size in sorted(sizes, key=sizes.__getitem__):
            items = [b for b, (positions, _) in enumerate(per_item) if len(positions) == size]
            counts = torch.stack([per_item[b][1] for b in items])
            bias = None if bool((counts == 1).all()) else counts.float().log()
            consecutive = items == list(range(items[0], items[-1] + 1))
            groups.append(MemoryGroup(torch.tensor(items, device=memory.device),
                                      torch.stack([per_item[b][0] for b in items]), bias,
                                      slice(items[0], items[-1] + 1) if consecutive else None))
        return cls(groups, B)


class CachedCrossAttention(SwappedAttention):
    """A `StreamingMultiheadAttention` (custom implementation, `cross_attention=True`) with cached memory K/V.

    Build it with `CachedCrossAttention.convert(module)`, which changes the class of an existing module in place
    (parameters are kept). Attributes set by the caller:
        key_padding_mask: bool `[B, S]` (True = attend) hiding padded memory positions; None attends to all.
        memory_rows: `MemoryRows` for a streaming session (generation): keys and values are computed for those
            rows only; it replaces `key_padding_mask`.
        memory_dtype: dtype of the cached keys/values in streaming (None: the computation's dtype).
    After `quantize_()`, the query and output projections run in int8 and the memory projection uses the
    dequantized int8 weight once per session.
    """
    key_padding_mask: tp.Optional[torch.Tensor] = None
    memory_rows: tp.Optional[MemoryRows] = None
    memory_dtype: tp.Optional[torch.dtype] = None
    memory_proj_int8: tp.Optional[Int8Weight] = None
    int8_module = "query_proj_int8"

    @classmethod
    def convert(cls, module: StreamingMultiheadAttention) -> "CachedCrossAttention":
        if not (module.cross_attention and module.custom):
            raise ValueError("only custom cross-attention modules can cache their keys and values")
        module.__class__ = cls
        assert isinstance(module, CachedCrossAttention)
        module.key_padding_mask = None
        return module

    def quantize_(self, release: tp.Callable[[torch.Tensor], None] = lambda tensor: None):
        """Run the query and output projections in int8, keep the memory projection as an int8 weight;
        `release` gets each float weight once it is consumed."""
        dim = self.embed_dim
        weight, bias = self.in_proj_weight, self.in_proj_bias
        self.query_proj_int8 = Int8Linear.from_float(weight[:dim], None if bias is None else bias[:dim])
        self.memory_proj_int8 = Int8Weight.from_float(weight[dim:])
        self.memory_proj_bias = None if bias is None else bias[dim:].detach().float().clone()
        del self.in_proj_weight, self.in_proj_bias
        release(weight)
        replace_linear_(self, "out_proj", release)

    def _project_query(self, query: torch.Tensor) -> torch.Tensor:
        if self.is_int8:
            return self.query_proj_int8(query)
        dim = self.embed_dim
        bias = self.in_proj_bias
        return F.linear(query, self.in_proj_weight[:dim], None if bias is None else bias[:dim])

    def _project_memory(self, memory: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `[B, H, S, D / H]` of the memory `[B, S, D]`, in one matrix product.

        On a CPU the product runs in float32 whatever the weights' format (bfloat16 and int8 weights are
        widened for it): it is one large product per session, and float32 is this hardware's fast format.
        """
        dim = self.embed_dim
        if self.memory_proj_int8 is not None:
            weight, bias = self.memory_proj_int8.dequantize(), self.memory_proj_bias
        else:
            bias = None if self.in_proj_bias is None else self.in_proj_bias[dim:]
            weight = self.in_proj_weight[dim:]
        if memory.device.type == "cpu" and not torch.is_grad_enabled():
            weight, memory = weight.float(), memory.float()
            bias = None if bias is None else bias.float()
        k, v = F.linear(memory, weight, bias).split(dim, dim=-1)
        if self.qk_layer_norm:
            k = self.k_layer_norm(k)
        # Contiguous head-major copies: every decoding step then reads them sequentially (much faster SDPA).
        return (rearrange(k, "b s (h d) -> b h s d", h=self.num_heads).contiguous(),
                rearrange(v, "b s (h d) -> b h s d", h=self.num_heads).contiguous())

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: tp.Optional[torch.Tensor]) -> torch.Tensor:
        dtype = q.dtype
        if self.attention_as_float32:
            q, k, v = q.float(), k.float(), v.float()
        q = q.to(k.dtype)
        mask = mask if mask is None or mask.dtype == torch.bool else mask.to(k.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return x.to(dtype)

    def _streaming_memory(self, memory: torch.Tensor
                          ) -> tp.List[tp.Tuple[torch.Tensor, torch.Tensor, tp.Optional[torch.Tensor]]]:
        """Per group of `memory_rows`: keys and values `[G, H, S, D / H]` and the score bias `[G, 1, 1, S]` in their
        dtype, computed at the first step of the session and kept in its state."""
        state = self._streaming_state
        assert self.memory_rows is not None
        if "memory_groups" not in state:
            groups = []
            for group in self.memory_rows.groups:
                k, v = self._project_memory(memory[group.items[:, None], group.rows])  # rows: [G, S, D]
                dtype = self.memory_dtype or k.dtype
                bias = None if group.bias is None else group.bias[:, None, None, :].to(dtype)
                groups.append((k.to(dtype), v.to(dtype), bias))
            state["memory_groups"] = groups  # type: ignore[assignment]
        return state["memory_groups"]  # type: ignore[return-value]

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,  # type: ignore[override]
                key_padding_mask=None, need_weights=False, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        """`query` `[B, T, D]` attends to the memory `key` = `value` `[B, S, D]`; returns `(out [B, T, D], None)`."""
        assert key is value, "cross-attention memory: keys and values come from the same tensor"
        assert attn_mask is None and key_padding_mask is None and not need_weights
        q = self._project_query(query)
        if self.qk_layer_norm:
            q = self.q_layer_norm(q)
        B, T, _ = query.shape
        q = q.view(B, T, self.num_heads, self.embed_dim // self.num_heads).transpose(1, 2)  # [B, H, T, d]
        if self._is_streaming and self.memory_rows is not None:
            x = self._attend_rows(q, key)
        else:
            if self._is_streaming and "memory_keys" in self._streaming_state:
                k = self._streaming_state["memory_keys"]
                v = self._streaming_state["memory_values"]
            else:
                k, v = self._project_memory(key)
                if self._is_streaming:
                    self._streaming_state["memory_keys"] = k
                    self._streaming_state["memory_values"] = v
            mask = None
            if self.key_padding_mask is not None:
                mask = self.key_padding_mask.to(q.device)[:, None, None, :]
            x = self._attend(q, k, v, mask)
        x = x.to(query.dtype).transpose(1, 2).reshape(B, T, self.embed_dim)
        return self.out_proj(x), None

    def _attend_rows(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Attention of `q` `[B, H, T, D / H]` to the distinct rows of each item (see `MemoryRows`)."""
        assert self.memory_rows is not None
        groups = self.memory_rows.groups
        outputs = [self._attend(q[group.batch_slice or group.items], k, v, bias)
                   for group, (k, v, bias) in zip(groups, self._streaming_memory(memory))]
        if self.memory_rows.in_batch_order:
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        out = torch.empty_like(q)
        for group, x in zip(groups, outputs):
            out[group.items] = x
        return out


def cross_attention_modules(transformer: StreamingTransformer) -> tp.List[StreamingMultiheadAttention]:
    """The cross-attention module of every layer of an AudioCraft `StreamingTransformer`."""
    return [layer.cross_attention for layer in transformer.layers if getattr(layer, "cross_attention", None)]
