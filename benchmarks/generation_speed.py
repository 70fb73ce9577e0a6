"""Decoding speed of VidMuse's LM: our path (cached cross-attention) against AudioCraft's `LMModel.generate`.

Both run on the same random weights, shaped like VidMuse-small (dim 1024, 16 heads, 24 layers; `--layers`
shrinks it), with the same 30 s video memory (3000 tokens) and classifier-free guidance (one video + its null:
batch 2). The baseline is AudioCraft's own `LMModel` fed the memory through a conditioner, so it recomputes the
cross-attention keys and values at every step, as the release does.

Prints steps/s for both, `ratio: X` (ours / AudioCraft), the memory-bandwidth bound (bytes of LM weights read
per step / a read bandwidth measured here) and the fraction of that bound our path reaches.

    python benchmarks/generation_speed.py --layers 4
"""

import argparse
from dataclasses import dataclass
import logging
import time
import typing as tp
import warnings

from audiocraft.models.lm import LMModel
from audiocraft.modules.conditioners import ConditioningAttributes, ConditioningProvider, TextConditioner
import torch

from audiocraft_ext.models.builders import get_condition_fuser, get_vidmuse_lm, load_lm_config
from audiocraft_ext.models.lm import VIDEO_CONDITION

warnings.filterwarnings("ignore")


class FixedMemoryConditioner(TextConditioner):
    """Returns a fixed memory for every present attribute and a second one for nulled ones (AudioCraft's CFG
    dropout nulls text to None), so AudioCraft's generate sees the same `[cond, null]` memory as ours."""

    def __init__(self, memory: torch.Tensor, null_memory: torch.Tensor):
        super().__init__(dim=memory.shape[-1], output_dim=memory.shape[-1])
        self.memory = memory
        self.null_memory = null_memory

    def tokenize(self, texts: tp.List[tp.Optional[str]]) -> tp.List[bool]:
        return [text is not None for text in texts]

    def forward(self, present: tp.List[bool]):
        memory = torch.cat([self.memory if p else self.null_memory for p in present])
        return memory, torch.ones(memory.shape[:2], dtype=torch.bool)


def measure_read_bandwidth(num_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second of a streaming read (sum over a float32 buffer larger than the caches), best of runs."""
    buffer = torch.ones(num_bytes // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - start)
    return num_bytes / best


@dataclass
class Timing:
    steps: int
    seconds: float
    first_step_seconds: float  # includes the one-time work (our path projects the memory keys/values there)

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    @property
    def steady_rate(self) -> float:
        return (self.steps - 1) / (self.seconds - self.first_step_seconds)


def time_generation(generate: tp.Callable[[tp.Callable[[int, int], None]], torch.Tensor]) -> Timing:
    """Run `generate(callback)`, timing every decoding step through the callback."""
    stamps = []
    start = time.perf_counter()
    generate(lambda done, total: stamps.append(time.perf_counter()))
    end = time.perf_counter()
    return Timing(len(stamps), end - start, stamps[0] - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=24, help="transformer layers (24 for VidMuse-small)")
    parser.add_argument("--steps", type=int, default=20, help="decoding steps to time")
    parser.add_argument("--memory_tokens", type=int, default=3000, help="video memory length (30 s x 2 fps x 50)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = load_lm_config(["model/lm/model_scale=small", f"transformer_lm.num_layers={args.layers}"])
    ours = get_vidmuse_lm(cfg).eval()
    dim = cfg.transformer_lm.dim
    memory = torch.randn(1, args.memory_tokens, dim)
    null_memory = torch.randn(1, args.memory_tokens, dim)
    cfg_conditions = {VIDEO_CONDITION: (torch.cat([memory, null_memory]),
                                        torch.ones(2, args.memory_tokens, dtype=torch.bool))}

    lm_kwargs = {k: v for k, v in cfg.transformer_lm.items() if k not in ("cross_attention",)}
    baseline = LMModel(pattern_provider=ours.pattern_provider,
                       condition_provider=ConditioningProvider({VIDEO_CONDITION: FixedMemoryConditioner(
                           memory, null_memory)}),
                       fuser=get_condition_fuser(), cross_attention=True, cfg_coef=3.0, **lm_kwargs).eval()
    missing, unexpected = baseline.load_state_dict(
        {k: v for k, v in ours.state_dict().items() if not k.startswith("video_encoder.")}, strict=False)
    missing = [k for k in missing if not k.startswith("condition_provider.")]  # the conditioner's unused proj
    assert not missing and not unexpected, (missing, unexpected)

    extra_steps = max(ours.pattern_provider.delays)  # the delay pattern adds max(delays) steps
    sampling = dict(use_sampling=True, top_k=250, temp=1.0, cfg_coef=3.0)
    attributes = [ConditioningAttributes(text={VIDEO_CONDITION: "video"})]

    def run_ours(callback, steps: int = args.steps):
        return ours.generate(cfg_condition_tensors=cfg_conditions, callback=callback, max_gen_len=steps - extra_steps,
                             generators=[torch.Generator().manual_seed(0)], **sampling)

    def run_baseline(callback, steps: int = args.steps):
        return baseline.generate(conditions=attributes, callback=callback, max_gen_len=steps - extra_steps,
                                 **sampling)

    weight_bytes = sum(p.numel() * p.element_size() for n, p in ours.named_parameters()
                       if not n.startswith("video_encoder."))
    kv_bytes = 2 * args.layers * 2 * args.memory_tokens * dim * 4
    print(f"model: dim {dim}, {cfg.transformer_lm.num_heads} heads, {args.layers} layers, card "
          f"{cfg.transformer_lm.card}; memory {args.memory_tokens} tokens; batch 2 (video + CFG null); fp32; "
          f"{torch.get_num_threads()} threads")
    for run in (run_ours, run_baseline):  # warm-up: allocator, kernel selection
        run(None, extra_steps + 2)
    timing_ours = time_generation(run_ours)
    timing_base = time_generation(run_baseline)
    bandwidth = measure_read_bandwidth()
    bound = bandwidth / weight_bytes
    print(f"LM weights read per step: {weight_bytes / 1e9:.3f} GB; cached cross-attention K/V read per step: "
          f"{kv_bytes / 1e9:.3f} GB")
    print(f"measured read bandwidth: {bandwidth / 1e9:.1f} GB/s -> weight-read bound {bound:.1f} steps/s "
          f"(with the K/V reads: {bandwidth / (weight_bytes + kv_bytes):.1f} steps/s)")
    for name, timing in (("audiocraft LMModel.generate", timing_base), ("ours (cached cross-attention)", timing_ours)):
        print(f"{name}: {timing.rate:.2f} steps/s ({timing.steps} steps in {timing.seconds:.2f} s; first step "
              f"{timing.first_step_seconds:.2f} s, then {timing.steady_rate:.2f} steps/s)")
    print(f"steady-state ratio (after the first step): {timing_ours.steady_rate / timing_base.steady_rate:.2f}")
    print(f"fraction of the weight-read bound reached by ours: {timing_ours.rate / bound:.1%} "
          f"(steady state: {timing_ours.steady_rate / bound:.1%})")
    print(f"ratio: {timing_ours.rate / timing_base.rate:.2f}")


if __name__ == "__main__":
    main()
