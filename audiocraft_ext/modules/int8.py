"""Int8 linear layers for CPU decoding, on PyTorch's own FBGEMM kernels.

Decoding one step reads every LM weight once, so on a CPU its speed is the bytes read per step: int8 weights read
a quarter of float32's. The weights are quantized per output channel (symmetric int8); the activations are
quantized per tensor at every call (asymmetric uint8) inside FBGEMM's dynamic linear (`quantized::linear_dynamic`),
one C++ call that also computes the exact integer product. Chosen by measurement at the medium shape (48 layers x
6 linears, batch 2, one decoding step's weights): 74-76 ms per step against 90-91 ms for oneDNN's
`qlinear_pointwise` with PyTorch's dynamic quantizer in front of it (21 GB/s against 17.5 GB/s; about 20 us less
fixed cost per call), and, unlike oneDNN's dynamic linear, FBGEMM keeps a single (packed) copy of each weight.
On CPUs without VNNI instructions the activations use 7 bits (`reduce_range`): FBGEMM's AVX2 product sums pairs
of uint8 x int8 in 16 bits, which the full 8-bit range could saturate. `benchmarks/generation_speed.py` gives the
figures; the README's speed section gives them and the quality of the result.

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
from torch.nn import functional as F


OUTPUT_ACTIVATIONS = ("none", "gelu")


def int8_supported(device: tp.Union[str, torch.device] = "cpu") -> bool:
    """Whether int8 layers can run on `device` (CPU with PyTorch's FBGEMM int8 kernels)."""
    return torch.device(device).type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines


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


class Int8Linear(nn.Module):
    """`nn.Linear` with int8 weights and dynamically quantized activations (CPU, FBGEMM).

    Build it with `Int8Linear.from_float(weight, bias)`. Input `[..., in]` in any float dtype, output float32
    `[..., out]`. Inference only (no gradient).
    """

    def __init__(self, packed: torch.ScriptObject, in_features: int, out_features: int, activation: str = "none"):
        super().__init__()
        if activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"activation must be one of {OUTPUT_ACTIVATIONS}, got '{activation}'")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.packed_params = packed  # FBGEMM's packed weight, scales and float bias (not a tensor: no buffer)
        self.reduce_range = not cpu_has_vnni()

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                   activation: str = "none") -> "Int8Linear":
        """Quantize a float weight `[out, in]` (the bias stays float32); `activation` ('none' or 'gelu', exact
        erf GELU) is applied to the output."""
        out_features, in_features = weight.shape
        values, scale = quantize_per_channel(weight)
        with warnings.catch_warnings():  # PyTorch's notice that quantized tensors are deprecated: FBGEMM's own input
            warnings.filterwarnings("ignore", message=".*quantized tensor.*")
            quantized = torch._make_per_channel_quantized_tensor(
                values, scale.double(), torch.zeros(out_features, dtype=torch.long), 0)
            with _quantized_engine("fbgemm"):
                packed = torch.ops.quantized.linear_prepack(
                    quantized, None if bias is None else bias.detach().float().contiguous())
        return cls(packed, in_features, out_features, activation)

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "none") -> "Int8Linear":
        return cls.from_float(linear.weight, linear.bias, activation)

    @property
    def nbytes(self) -> int:
        """Bytes read per call (weight and scales)."""
        return self.in_features * self.out_features + self.out_features * 4

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}, "
                f"reduce_range={self.reduce_range}")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.ops.quantized.linear_dynamic(x.float(), self.packed_params, self.reduce_range)
        return F.gelu(out) if self.activation == "gelu" else out


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI instructions (PyTorch's own probe; False when this PyTorch has none: the safe side)."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(probe()) if probe is not None else False


@contextmanager
def _quantized_engine(engine: str):
    """PyTorch's quantized engine set to `engine` for the block (it decides which library packs a weight)."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def replace_linear_(parent: nn.Module, name: str, release: tp.Callable[[torch.Tensor], None],
                    activation: str = "none") -> Int8Linear:
    """Replace the `nn.Linear` child `name` of `parent` by its `Int8Linear`; `release` then gets its float weight."""
    linear = getattr(parent, name)
    quantized = Int8Linear.from_linear(linear, activation)
    setattr(parent, name, quantized)
    release(linear.weight)
    return quantized
