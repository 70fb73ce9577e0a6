"""Generation speed of VidMuse's LM on this machine: a whole 30 s window, through the loader, in any weight format.

The benchmark writes a random-weight checkpoint in the release's layout (official key names, no visual config)
to a temporary folder, loads it with `load_lm_model(folder, dtype=...)` as users do, and generates one 30 s
window for a random 30 s video (60 local + 32 global frames; batch 2 with the CFG null video). It prints:
- the first step (video memory: CLIP, long-short-term fusion, and its cross-attention keys/values) in seconds;
- the decoding rate at the start and at the end of the window (the self-attention cache grows along it);
- `seconds for 30 s of music: X` (first step + all decoding steps, wall clock);
- the bytes read per step (weights + video-memory keys/values + self-attention cache, at its mean length) and
  the fraction of the read bound (a streaming read measured here) the decoding reaches;
- `ratio: X`: our decoding rate over AudioCraft's own `LMModel.generate` on the same (float) weights, both over
  the same first `--baseline_steps` steps, first step included. The baseline is fed the same memory through a
  conditioner, so it recomputes the cross-attention keys/values at every step, as the release does.
With `--peak_memory`, each format is also loaded in a fresh process and its peak resident set printed.

    python benchmarks/generation_speed.py --scale small
    python benchmarks/generation_speed.py --scale medium --dtype int8 --peak_memory
"""

import argparse
from dataclasses import dataclass
import gc
import json
from pathlib import Path
import platform
import subprocess
import sys
import time
import typing as tp
import warnings

import audiocraft_ext  # noqa: F401  (first: its filter drops xFormers' CPU notice before AudioCraft imports it)
from audiocraft.models.lm import LMModel
from audiocraft.modules.conditioners import ConditioningAttributes, ConditioningProvider, TextConditioner
import torch

from audiocraft_ext.models.builders import get_condition_fuser
from audiocraft_ext.models.lm import VIDEO_CONDITION, VideoBatch, VidMuseLM
from audiocraft_ext.models.loaders import load_lm_model
from audiocraft_ext.modules.cross_attention import MemoryRows, cross_attention_modules
from audiocraft_ext.modules.int8 import Int8Linear

from random_checkpoint import random_checkpoint, random_video

warnings.filterwarnings("ignore")

FRAME_RATE = 50  # EnCodec 32 kHz tokens per second
LOCAL_FPS = 2
GLOBAL_FRAMES = 32  # the release's inference value


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


def cpu_description() -> str:
    """The CPU's model name and the vector instructions PyTorch uses on it (figures depend on both)."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), [])
        isa = [flag for flag in ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_tile")
               if flag in flags]
        model += f" ({', '.join(isa) or 'no AVX2'})"
    return f"{model}; PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def measure_read_bandwidth(num_bytes: int = 1 << 31, repeats: int = 5) -> float:
    """Bytes per second of a streaming read (sum over a float32 buffer far larger than the caches), best of runs."""
    buffer = torch.ones(num_bytes // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - start)
    return num_bytes / best


def peak_memory_gb(folder: Path, dtype: str) -> tp.Tuple[float, float]:
    """Peak resident set (GB) of a fresh process that loads `folder` with `dtype`, and after it has then
    generated a few steps for a 1 s video (every weight read once: the memory-mapped float32 pages too)."""
    code = ("import resource, warnings, torch; warnings.filterwarnings('ignore');"
            "from audiocraft_ext.models.loaders import load_lm_model;"
            "from audiocraft_ext.models.lm import VideoBatch;"
            f"lm = load_lm_model({str(folder)!r}, dtype={dtype!r});"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss);"
            "frames = torch.zeros(1, 3, 2, 224, 224, dtype=torch.uint8);"
            "lm.generate(video=VideoBatch(frames, frames), max_gen_len=4);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    loaded, generated = (int(line) * 1024 / 1e9 for line in out.strip().splitlines()[-2:])
    return loaded, generated


@dataclass
class WindowTiming:
    first_step: float  # seconds: video memory + first decoding step
    stamps: tp.List[float]  # time of each decoding step's end, from the start
    start_rate: float  # steps/s over the first steps after the first one
    end_rate: float  # steps/s over the last steps of the window

    @property
    def total(self) -> float:
        return self.stamps[-1]


def time_window(lm: VidMuseLM, video: VideoBatch, tokens: int, edge_steps: int) -> WindowTiming:
    """Generate `tokens` timesteps for `video` (with its CFG null), from the frames, timing every step."""
    stamps: tp.List[float] = []
    start = time.perf_counter()
    conditions = lm.compute_video_condition(video, with_null=True)
    lm.generate(cfg_condition_tensors=conditions, max_gen_len=tokens, use_sampling=True, top_k=250, cfg_coef=3.0,
                generators=[torch.Generator().manual_seed(0)],
                callback=lambda done, total: stamps.append(time.perf_counter() - start))
    steps = len(stamps)
    edge = min(edge_steps, (steps - 1) // 2)
    return WindowTiming(stamps[0], stamps, edge / (stamps[edge] - stamps[0]),
                        edge / (stamps[-1] - stamps[-1 - edge]))


def decode_bytes_per_step(lm: VidMuseLM, memory_rows: int, mean_cache_length: float, batch: int) -> tp.Dict[str, float]:
    """Bytes read by one decoding step: the weights it uses, the video-memory keys/values of all layers
    (`memory_rows` rows over the batch), the self-attention cache at `mean_cache_length` positions."""
    weights = 0
    skip = set()
    for module in cross_attention_modules(lm.transformer):  # the memory projection runs once per window
        if hasattr(module, "in_proj_weight"):
            skip.add(id(module.in_proj_weight))
            weights += module.in_proj_weight[:module.embed_dim].numel() * module.in_proj_weight.element_size()
    for name, param in lm.named_parameters():
        if not name.startswith(("video_encoder.", "emb.", "condition_provider.")) and id(param) not in skip:
            weights += param.numel() * param.element_size()
    weights += sum(module.nbytes for module in lm.modules() if isinstance(module, Int8Linear))
    layers, dim = len(lm.transformer.layers), lm.dim
    cross = lm.transformer.layers[0].cross_attention
    memory_size = torch.tensor([], dtype=getattr(cross, "memory_dtype", None) or torch.float32).element_size()
    self_attn = lm.transformer.layers[0].self_attn
    cache_size = torch.tensor([], dtype=getattr(self_attn, "kv_cache_dtype", None) or torch.float32).element_size()
    return {"weights": weights, "memory": 2 * layers * memory_rows * dim * memory_size,
            "self_attention_cache": 2 * layers * batch * mean_cache_length * dim * cache_size}


def audiocraft_baseline(lm: VidMuseLM, memory: torch.Tensor, null_memory: torch.Tensor) -> LMModel:
    """AudioCraft's `LMModel` with `lm`'s transformer weights (float), fed `[memory, null]` by a conditioner."""
    cfg = lm.cfg
    kwargs = {k: v for k, v in cfg.transformer_lm.items() if k not in ("cross_attention",)}
    with torch.device("meta"):
        baseline = LMModel(pattern_provider=lm.pattern_provider,
                           condition_provider=ConditioningProvider({VIDEO_CONDITION: FixedMemoryConditioner(
                               memory, null_memory)}),
                           fuser=get_condition_fuser(), cross_attention=True, cfg_coef=3.0, **kwargs)
    state = {k: v for k, v in lm.state_dict().items() if not k.startswith("video_encoder.")}
    missing, unexpected = baseline.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.startswith("condition_provider.")]  # the conditioner's unused proj
    assert not missing and not unexpected, (missing, unexpected)
    baseline.condition_provider.conditioners[VIDEO_CONDITION].output_proj.to_empty(device="cpu")
    return baseline.eval()


def time_steps(generate: tp.Callable[[tp.Callable[[int, int], None]], tp.Any]) -> float:
    """Seconds of `generate(callback)`."""
    start = time.perf_counter()
    generate(lambda done, total: None)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["small", "medium"], default="small",
                        help="LM shape: VidMuse-small (dim 1024, 24 layers) or the release's medium (1536, 48)")
    parser.add_argument("--layers", type=int, default=None, help="fewer transformer layers (quick runs)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "int8"])
    parser.add_argument("--seconds", type=float, default=30.0, help="video and music length (one window: <= 30)")
    parser.add_argument("--decode_seconds", type=float, default=None,
                        help="decode only this much music (first-step comparisons; default: --seconds)")
    parser.add_argument("--baseline_steps", type=int, default=None,
                        help="steps for the ratio against AudioCraft (default 20 small, 4 medium)")
    parser.add_argument("--edge_steps", type=int, default=50, help="steps timed at the start and at the end")
    parser.add_argument("--peak_memory", action="store_true",
                        help="also load float32, bfloat16 and int8 in fresh processes and print their peak RSS")
    parser.add_argument("--checkpoint_dir", type=Path, default=None,
                        help="write the random checkpoint here and keep it (reused when already there); "
                             "default: a temporary folder, removed at the end")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    baseline_steps = args.baseline_steps or (20 if args.scale == "small" else 4)
    torch.manual_seed(0)
    figures: tp.Dict[str, tp.Any] = {"scale": args.scale, "layers": args.layers, "dtype": args.dtype,
                                     "threads": torch.get_num_threads(), "cpu": cpu_description()}
    print(f"CPU: {figures['cpu']}, {torch.get_num_threads()} threads")

    with random_checkpoint(args.scale, args.layers, args.checkpoint_dir) as folder:
        if args.peak_memory:
            for dtype in ("float32", "bfloat16", "int8"):
                loaded, generated = peak_memory_gb(folder, dtype)
                figures[f"peak_rss_gb_{dtype}"] = {"loaded": loaded, "after_generation": generated}
                print(f"peak resident set, {dtype}: {loaded:.2f} GB loaded, {generated:.2f} GB after generating")

        start = time.perf_counter()
        lm = load_lm_model(folder, dtype=args.dtype)
        print(f"loaded as {args.dtype} in {time.perf_counter() - start:.1f} s")
        tokens = int((args.decode_seconds or args.seconds) * FRAME_RATE)
        local = int(args.seconds * LOCAL_FPS)
        video = random_video(local, GLOBAL_FRAMES)
        print(f"model: dim {lm.dim}, {len(lm.transformer.layers)} layers, {args.dtype}; {local} local + "
              f"{GLOBAL_FRAMES} global frames ({local * lm.video_encoder.tokens_per_frame} memory tokens); batch 2 "
              f"(video + CFG null); {torch.get_num_threads()} threads")
        time_window(lm, VideoBatch(video.local_frames[:, :, :2], video.global_frames[:, :, :2]), 8, 1)  # warm-up
        timing = time_window(lm, video, tokens, args.edge_steps)
        steps = len(timing.stamps)
        conditions = lm.compute_video_condition(video, with_null=True)
        memory, mask = conditions[VIDEO_CONDITION]
        rows = MemoryRows.build(memory, mask, deduplicate=lm.deduplicate_memory).total_rows
        per_step = decode_bytes_per_step(lm, rows, steps / 2, 2)
        bandwidth = measure_read_bandwidth()
        figures.update(first_step_s=timing.first_step, start_steps_per_s=timing.start_rate,
                       end_steps_per_s=timing.end_rate, steps=steps, seconds_for_window=timing.total,
                       bytes_per_step=per_step, read_bandwidth_gb_s=bandwidth / 1e9, memory_rows=rows)
        total_bytes = sum(per_step.values())
        print(f"first step (video memory + K/V projection + first decoding step): {timing.first_step:.1f} s")
        print(f"decoding: {timing.start_rate:.2f} steps/s at the start, {timing.end_rate:.2f} steps/s at the end "
              f"({steps} steps)")
        print(f"bytes read per step: {total_bytes / 1e9:.3f} GB (weights {per_step['weights'] / 1e9:.3f}, "
              f"video-memory K/V {per_step['memory'] / 1e9:.3f} over {rows} distinct rows, self-attention cache "
              f"{per_step['self_attention_cache'] / 1e9:.3f} at its mean length)")
        mean_rate = (steps - 1) / (timing.total - timing.first_step)
        fraction = mean_rate * total_bytes / bandwidth
        figures["read_bound_fraction"] = fraction
        print(f"read bandwidth {bandwidth / 1e9:.1f} GB/s -> bound {bandwidth / total_bytes:.2f} steps/s; decoding "
              f"reaches {fraction:.1%} of it ({mean_rate:.2f} steps/s over the window)")
        print(f"seconds for {args.decode_seconds or args.seconds:g} s of music: {timing.total:.1f}")

        float_lm = lm if args.dtype == "float32" else load_lm_model(folder, dtype="float32")
        del lm
        gc.collect()
        baseline = audiocraft_baseline(float_lm, *memory.float().split(1))
        attributes = [ConditioningAttributes(text={VIDEO_CONDITION: "video"})]
        extra = max(float_lm.pattern_provider.delays)
        ours_lm = load_lm_model(folder, dtype=args.dtype) if args.dtype != "float32" else float_lm
        ours_seconds = time_steps(lambda cb: ours_lm.generate(
            cfg_condition_tensors=conditions, max_gen_len=baseline_steps - extra, callback=cb, top_k=250,
            cfg_coef=3.0, generators=[torch.Generator().manual_seed(0)]))
        base_seconds = time_steps(lambda cb: baseline.generate(
            conditions=attributes, max_gen_len=baseline_steps - extra, callback=cb, top_k=250, cfg_coef=3.0))
        figures.update(baseline_steps=baseline_steps, baseline_s=base_seconds, ours_baseline_steps_s=ours_seconds)
        print(f"AudioCraft LMModel.generate (float32): {baseline_steps} steps in {base_seconds:.1f} s; ours "
              f"({args.dtype}): {ours_seconds:.1f} s (memory already computed in both)")
        print(f"ratio: {base_seconds / ours_seconds:.2f}")
        figures["ratio"] = base_seconds / ours_seconds
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
