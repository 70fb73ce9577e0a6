"""Int8 linear layers for CPU decoding, on PyTorch's own oneDNN kernels.

Decoding one step reads every LM weight once, so on a CPU its speed is the bytes read per step: int8 weights read
a quarter of float32's. The weights are quantized per output channel (symmetric int8); the activations are
quantized per tensor at every call (asymmetric uint8, the full 8-bit range, by PyTorch's dynamic quantizer: one
C++ call), and the product runs in oneDNN's `qlinear_pointwise` (the kernel PyTorch's x86 inductor quantization
uses), which computes the exact integer product. Chosen by measurement at the medium shape: 6.5 % more steps/s
than quantizing the activations with NumPy, and as fast as oneDNN's dynamic linear (`quantized::linear_dynamic`),
which keeps a second copy of every weight (5.1 GB resident instead of 3.2). `benchmarks/generation_speed.py`
gives the figures; the README's speed section gives them and the quality of the result.

`Int8Linear` serves the linear layers that run at every step. `Int8Weight` keeps a weight that runs once per
generation window (the cross-attention projection of the video memory): it is dequantized for that one float
product, so the memory is not squeezed through a per-tensor activation scale.
"""

from dataclasses import dataclass
import typing as tp
import warnings

import torch
from torch import nn


FUSED_ACTIVATIONS = ("none", "gelu")


def int8_supported(device: tp.Union[str, torch.device] = "cpu") -> bool:
    """Whether int8 layers can run on `device` (CPU with PyTorch's oneDNN int8 kernels)."""
    return (torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.onednn, "qlinear_pointwise"))


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
    """`nn.Linear` with int8 weights and dynamically quantized activations (CPU, oneDNN).

    Build it with `Int8Linear.from_float(weight, bias)`. Input `[..., in]` in any float dtype, output float32
    `[..., out]`. Inference only (no gradient).
    """

    def __init__(self, packed: torch.Tensor, scale: torch.Tensor, bias: tp.Optional[torch.Tensor],
                 in_features: int, out_features: int, activation: str = "none"):
        super().__init__()
        if activation not in FUSED_ACTIVATIONS:
            raise ValueError(f"activation must be one of {FUSED_ACTIVATIONS}, got '{activation}'")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        # Buffers, not parameters: the module is not trainable, and `.to(device)` still moves them.
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("weight_scale", scale, persistent=False)
        self.register_buffer("bias", bias, persistent=False)
        self.register_buffer("weight_zero_point", torch.zeros(out_features, dtype=torch.long), persistent=False)

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: tp.Optional[torch.Tensor] = None,
                   activation: str = "none") -> "Int8Linear":
        """Quantize a float weight `[out, in]` (and keep the bias, as float32); `activation` ('none' or 'gelu',
        exact erf GELU) is applied to the output inside the same kernel."""
        _silence_quantized_tensor_notice()
        out_features, in_features = weight.shape
        values, scale = quantize_per_channel(weight)
        packed = torch.ops.onednn.qlinear_prepack(values, None)
        return cls(packed, scale, None if bias is None else bias.detach().float().clone(), in_features,
                   out_features, activation)

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "none") -> "Int8Linear":
        return cls.from_float(linear.weight, linear.bias, activation)

    @property
    def nbytes(self) -> int:
        """Bytes read per call (weight and scales)."""
        return self.in_features * self.out_features + self.out_features * 4

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"activation={self.activation}")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        quantized, scale, zero_point = quantize_activations(x.reshape(-1, self.in_features))
        out = torch.ops.onednn.qlinear_pointwise(
            quantized, scale, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point,
            self.bias, 1.0, 0, torch.float32, self.activation, [], "none")
        return out.view(*shape[:-1], self.out_features)


def replace_linear_(parent: nn.Module, name: str, release: tp.Callable[[torch.Tensor], None],
                    activation: str = "none") -> Int8Linear:
    """Replace the `nn.Linear` child `name` of `parent` by its `Int8Linear`; `release` then gets its float weight."""
    linear = getattr(parent, name)
    quantized = Int8Linear.from_linear(linear, activation)
    setattr(parent, name, quantized)
    release(linear.weight)
    return quantized


def quantize_activations(x: torch.Tensor) -> tp.Tuple[torch.Tensor, float, int]:
    """Asymmetric per-tensor uint8 quantization of CPU activations `[N, in]`: (uint8 `[N, in]`, scale, zero point).

    The range always includes zero, so zero stays exactly representable.
    """
    quantized = torch.quantize_per_tensor_dynamic(x.detach().float().contiguous(), torch.quint8, False)
    return quantized.int_repr(), quantized.q_scale(), quantized.q_zero_point()


def _silence_quantized_tensor_notice():
    """PyTorch warns once per process that its quantized tensor type is deprecated (the kernels used here are the
    maintained ones); the notice is spent here, on a tiny tensor, when a layer is built, so users never see it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        quantize_activations(torch.zeros(1, 1))

