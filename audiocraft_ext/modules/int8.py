"""Int8 linear layers for CPU decoding, on PyTorch's own oneDNN kernels.

Decoding one step reads every LM weight once, so on a CPU its speed is the bytes read per step: int8 weights read
a quarter of float32's. The weights are quantized per output channel (symmetric int8); the activations are
quantized per tensor at every call (asymmetric uint8, the full 8-bit range) inside oneDNN's dynamic quantized
linear (`quantized::linear_dynamic`, packed for the oneDNN engine), which computes the exact integer product.
At decoding shapes (a few rows) each call is mostly overhead around a short kernel, so quantizing the activations
in the same C++ call matters: it saved a fifth of the linear layers' time against quantizing them from Python.
`benchmarks/generation_speed.py` gives the figures; the README's speed section gives them and the quality.

`Int8Linear` serves the linear layers that run at every step. `Int8Weight` keeps a weight that runs once per
generation window (the cross-attention projection of the video memory): it is dequantized for that one float
product, so the memory is not squeezed through a per-tensor activation scale.
"""

from contextlib import contextmanager
from dataclasses import dataclass
import typing as tp
import warnings

import torch
from torch import nn
import torch.nn.functional as F


ACTIVATIONS = ("none", "gelu")
ENGINE = "onednn"


def int8_supported(device: tp.Union[str, torch.device] = "cpu") -> bool:
    """Whether int8 layers can run on `device` (CPU with PyTorch's oneDNN quantized engine)."""
    return torch.device(device).type == "cpu" and ENGINE in torch.backends.quantized.supported_engines


def quantize_per_channel(weight: torch.Tensor) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: float `[out, in]` -> (int8 `[out, in]`, float32 scales `[out]`)."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


@dataclass
class Int8Weight:
    """An int8 weight `[out, in]` with its per-output-channel scales `[out]`, kept unpacked."""
    values: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> "Int8Weight":
        return cls(*quantize_per_channel(weight))

    def dequantize(self) -> torch.Tensor:
        """float32 `[out, in]`: the values the int8 weight stands for."""
        return self.values.float() * self.scale[:, None]


@contextmanager
def _quantized_engine(engine: str) -> tp.Iterator[None]:
    """Select PyTorch's quantized engine while packing (the packed weight keeps its engine for every later call)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


class Int8Linear(nn.Module):
    """`nn.Linear` with int8 weights and dynamically quantized activations (CPU, oneDNN).

    Build it with `Int8Linear.from_float(weight, bias)`. Input `[..., in]` in any float dtype, output float32
    `[..., out]`. Inference only (no gradient); the packed weight is not a buffer, so the layer stays on the CPU.
    """

    def __init__(self, packed: torch.ScriptObject, in_features: int, out_features: int, activation: str = "none"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got '{activation}'")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.packed = packed

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                   activation: str = "none") -> "Int8Linear":
        """Quantize a float weight `[out, in]` (and keep the bias, as float32); `activation` ('none' or 'gelu',
        exact erf GELU) is applied to the output."""
        out_features, in_features = weight.shape
        values, scale = quantize_per_channel(weight)
        with warnings.catch_warnings():
            # The packing op takes PyTorch's (deprecated) quantized tensor type; the kernel is the maintained one.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            weight_q = torch._make_per_channel_quantized_tensor(
                values, scale.double(), torch.zeros(out_features, dtype=torch.long), 0)
        with _quantized_engine(ENGINE):
            packed = torch.ops.quantized.linear_prepack(
                weight_q, None if bias is None else bias.detach().float().contiguous())
        return cls(packed, in_features, out_features, activation)

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "none") -> "Int8Linear":
        return cls.from_float(linear.weight, linear.bias, activation)

    @property
    def nbytes(self) -> int:
        """Bytes read per call (weight and scales)."""
        return self.in_features * self.out_features + self.out_features * 4

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        out = torch.ops.quantized.linear_dynamic(
            x.reshape(-1, self.in_features).float().contiguous(), self.packed, False)
        if self.activation == "gelu":
            out = F.gelu(out)
        return out.view(*shape[:-1], self.out_features)


def replace_linear_(parent: nn.Module, name: str, release: tp.Callable[[torch.Tensor], None],
                    activation: str = "none") -> Int8Linear:
    """Replace the `nn.Linear` child `name` of `parent` by its `Int8Linear`; `release` then gets its float weight."""
    linear = getattr(parent, name)
    quantized = Int8Linear.from_linear(linear, activation)
    setattr(parent, name, quantized)
    release(linear.weight)
    return quantized
