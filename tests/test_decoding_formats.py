"""Decoding paths for CPU speed: the preallocated self-attention cache, deduplicated memory rows, int8 and
bfloat16 weights, reduced video-memory K/V, page release, CLIP on distinct frames."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audiocraft_ext import infer
from audiocraft_ext.models.format_quality import compare_formats, greedy_codes
from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.models.loaders import UnsupportedDtype, load_lm_model, resolve_dtype
from audiocraft_ext.modules.cross_attention import MemoryRows
from audiocraft_ext.modules.int8 import Int8Linear, cpu_has_vnni, int8_supported
from audiocraft_ext.modules.self_attention import PreallocatedSelfAttention, self_attention_modules
from audiocraft_ext.synth.scenes import Scene, write_image
from audiocraft_ext.utils.devices import auto_device
from audiocraft_ext.utils.pages import release_pages

from conftest import build_tiny_lm, parity_fixture_dir

needs_int8 = pytest.mark.skipif(not int8_supported("cpu"), reason="no FBGEMM int8 kernels in this PyTorch build")


def random_video(batch: int, frames: int, global_frames: int = 4, seed: int = 0) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    return VideoBatch(torch.randint(0, 256, (batch, 3, frames, 224, 224), generator=g, dtype=torch.uint8),
                      torch.randint(0, 256, (batch, 3, global_frames, 224, 224), generator=g, dtype=torch.uint8))


def generate(lm, video, seeds, prompt=None, **kwargs):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return lm.generate(prompt, video=video, max_gen_len=40, generators=generators, **kwargs)


def test_preallocated_cache_gives_audiocraft_codes(tiny_lm_cfg):
    lm = build_tiny_lm(tiny_lm_cfg)
    video = random_video(2, 3)
    prompt = torch.randint(0, 48, (2, 4, 7))
    runs = {}
    for preallocated in (True, False):
        lm.set_preallocated_kv_cache(preallocated)
        assert all(isinstance(m, PreallocatedSelfAttention) == preallocated
                   for m in self_attention_modules(lm.transformer))
        runs[preallocated] = (generate(lm, video, [1, 2], use_sampling=True, top_k=20),
                              generate(lm, video, [1, 2], use_sampling=False),
                              generate(lm, video, [3, 4], prompt=prompt, use_sampling=True, top_k=20))
    for ours, audiocraft in zip(runs[True], runs[False]):
        assert torch.equal(ours, audiocraft)
    assert not torch.equal(runs[True][0], runs[True][1])  # sampling did sample


def test_preallocated_cache_is_written_in_place(tiny_lm_cfg):
    """One buffer per layer for the whole generation, sized for every step: no copy, no reallocation."""
    lm = build_tiny_lm(tiny_lm_cfg)
    module = self_attention_modules(lm.transformer)[0]
    seen = []

    def record(done, total):
        state = module._streaming_state
        seen.append((state["cache_keys"].data_ptr(), state["cache_keys"].shape[2], int(state["cache_length"])))

    lm.generate(video=random_video(1, 2), max_gen_len=25, callback=record)
    assert len({ptr for ptr, _, _ in seen}) == 1
    assert {capacity for _, capacity, _ in seen} == {25 + 3}  # timesteps + the delay pattern's extra steps
    assert [length for _, _, length in seen] == list(range(1, 29))


def test_memory_rows_keep_distinct_valid_rows_with_counts():
    memory = torch.randn(2, 6, 4)
    memory[0, 3] = memory[0, 1]
    memory[0, 5] = memory[0, 1]
    memory[1, 2:] = memory[1, 0]
    mask = torch.tensor([[True] * 6, [True, True, True, True, False, False]])
    rows = MemoryRows.build(memory, mask)
    by_item = {int(item): (group.rows[k].tolist(), None if group.bias is None else group.bias[k].exp().tolist())
               for group in rows.groups for k, item in enumerate(group.items)}
    assert by_item[0][0] == [0, 1, 2, 4]
    assert by_item[0][1] == pytest.approx([1, 3, 1, 1])
    assert by_item[1][0] == [0, 1]  # rows 2-3 repeat row 0, rows 4-5 are padding
    assert by_item[1][1] == pytest.approx([3, 1])
    plain = MemoryRows.build(memory, mask, deduplicate=False)
    assert sorted(len(group.rows[0]) for group in plain.groups) == [4, 6]
    assert all(group.bias is None for group in plain.groups)


def test_deduplicated_memory_gives_the_outputs_of_all_rows(tiny_lm_cfg):
    """The null video repeats one frame's tokens: attending to each distinct row once with a log(count) bias
    gives the logits of attending to every row, and so the same codes."""
    lm = build_tiny_lm(tiny_lm_cfg)
    video = random_video(1, 4)
    video.local_frames[:, :, 2:] = video.local_frames[:, :, :1]  # a still stretch in the video too
    conditions = lm.compute_video_condition(video, with_null=True)
    codes = torch.randint(0, 48, (2, 4, 20))
    outputs = {}
    for deduplicate in (True, False):
        lm.deduplicate_memory = deduplicate
        outputs[deduplicate] = (lm.compute_predictions_streamed(codes, conditions),
                                generate(lm, video, [5], use_sampling=True, top_k=20))
    valid = outputs[True][0].mask
    torch.testing.assert_close(outputs[True][0].logits[valid], outputs[False][0].logits[valid], atol=1e-5, rtol=1e-5)
    assert torch.equal(outputs[True][1], outputs[False][1])
    rows = MemoryRows.build(*conditions["video"])
    assert rows.total_rows == 2 * 50 + 50  # 2 distinct frames in the video (0, 1, 0, 0), 1 in its null


def test_streamed_predictions_match_teacher_forcing(tiny_lm):
    conditions = tiny_lm.compute_video_condition(random_video(2, 3))
    codes = torch.randint(0, 48, (2, 4, 15))
    full = tiny_lm.compute_predictions(codes, [], condition_tensors=conditions)
    streamed = tiny_lm.compute_predictions_streamed(codes, conditions)
    assert torch.equal(full.mask, streamed.mask)
    torch.testing.assert_close(streamed.logits[full.mask], full.logits[full.mask], atol=1e-5, rtol=1e-5)


def test_clip_runs_once_per_distinct_frame(tiny_lm):
    encoder = tiny_lm.video_encoder
    frames = random_video(1, 3).local_frames[0].permute(1, 0, 2, 3)  # [3 frames, 3, H, W]
    with_repeats = frames[[0, 1, 0, 2, 1]]
    calls = []
    handle = encoder.visual_encoder_model.vision_model.register_forward_hook(
        lambda module, args, kwargs_or_out: calls.append(1))
    try:
        tokens = encoder.clip_tokens(with_repeats)
    finally:
        handle.remove()
    separate = torch.cat([encoder.clip_tokens(frame[None]) for frame in with_repeats])
    torch.testing.assert_close(tokens, separate, atol=1e-5, rtol=1e-5)
    assert len(calls) == 1


@needs_int8
def test_int8_linear_is_close_to_float():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    x = torch.randn(3, 5, 256)
    quantized = Int8Linear.from_linear(linear)
    vnni = cpu_has_vnni()
    assert quantized.reduce_range == (not vnni)  # 7-bit activations by default where 8 bits would overflow
    with torch.no_grad():
        reference = linear(x)
    errors = {}
    for reduce_range in (False, True):  # 8-bit activations (CPUs with VNNI) and 7-bit ones (without)
        quantized.reduce_range = reduce_range
        out = quantized(x)
        assert out.shape == reference.shape and out.dtype == torch.float32
        errors[reduce_range] = float((out - reference).norm() / reference.norm())
    assert errors[True] < 0.04
    if vnni:  # without VNNI, FBGEMM's AVX2 products of 8-bit activations saturate (errors of ~14 % here)
        assert errors[False] < 0.02 and errors[False] < errors[True]  # one bit less of activation range shows
    assert quantized.nbytes < linear.weight.numel() * 4 / 3.5


@needs_int8
def test_int8_checkpoint_loads_and_generates(tiny_checkpoint):
    lm = load_lm_model(tiny_checkpoint, dtype="int8")
    assert lm.is_int8 and lm.cfg.dtype == "int8" and lm.weight_format == "int8"
    assert all(p.dtype == torch.float32 for p in lm.video_encoder.parameters())
    assert not any(name.endswith(("linear1.weight", "in_proj_weight")) for name, _ in lm.named_parameters())
    codes = lm.generate(video=random_video(2, 2), max_gen_len=12, generators=[torch.Generator().manual_seed(0)] * 2)
    assert codes.shape == (2, 4, 12)
    assert int(codes.min()) >= 0 and int(codes.max()) < lm.card


def test_bfloat16_checkpoint_keeps_the_video_encoder_in_float32_on_cpu(tiny_checkpoint):
    lm = load_lm_model(tiny_checkpoint, dtype="bfloat16")
    assert lm.transformer.layers[0].linear1.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in lm.video_encoder.parameters())
    assert lm.transformer.layers[0].cross_attention.memory_dtype == torch.bfloat16


def test_int8_is_refused_off_cpu():
    with pytest.raises(UnsupportedDtype, match="int8 weights run on CPU only"):
        resolve_dtype("int8", torch.device("cuda"))
    with pytest.raises(UnsupportedDtype, match="unknown dtype"):
        resolve_dtype("int4", torch.device("cpu"))
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_auto_device_prefers_a_visible_gpu_unless_the_format_is_cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_device() == auto_device(None) == "cuda"
    assert auto_device("auto", gpu_allowed=False) == "cpu"  # int8 weights
    assert auto_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_device() == "cpu"


def test_release_pages_keeps_memory_mapped_values(tmp_path):
    torch.save({"w": torch.arange(1 << 20, dtype=torch.float32)}, tmp_path / "w.pt")
    tensor = torch.load(tmp_path / "w.pt", mmap=True, weights_only=True)["w"]
    total = float(tensor.sum())
    release_pages(tensor)
    assert float(tensor.sum()) == total


# Run in a fresh interpreter: after other tests, the heap's old small holes take the blocks meant to stay, the
# 64 KB blocks then sit side by side, and freeing them merges them into the heap's top, which `free` itself trims.
_TRIM_HEAP_SCRIPT = """
import json
from pathlib import Path
import torch
from audiocraft_ext.utils.pages import trim_heap

def resident_bytes():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

freed, held = [], []
for _ in range(2000):  # 64 KB blocks (on the heap, under glibc's mmap threshold) between small ones that stay
    freed.append(torch.ones(16 * 1024))
    held.append(torch.ones(16))
del freed  # the holes stay resident: blocks that stay sit between them
before = resident_bytes()
trimmed = trim_heap()
print(json.dumps({"trimmed": trimmed, "given_back": before - resident_bytes(),
                  "held_intact": all(float(block.sum()) == 16 for block in held)}))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_trim_heap_gives_back_holes_between_live_blocks():
    run = subprocess.run([sys.executable, "-c", _TRIM_HEAP_SCRIPT], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if not result["trimmed"]:
        pytest.skip("not glibc")
    assert result["given_back"] > 64e6  # of the 128 MB freed
    assert result["held_intact"]


@pytest.fixture(scope="module")
def parity_model_and_window():
    folder = parity_fixture_dir()
    inputs = torch.load(folder / "inputs.pt", weights_only=True)
    heads = json.loads((folder / "tiny_arch.json").read_text())["clip_vision_config"]["num_attention_heads"]
    reference = load_lm_model(folder, dtype="float32", clip_num_heads=heads)
    conditions = reference.compute_video_condition(
        VideoBatch(inputs["local_frames"], inputs["global_frames"]), with_null=True)
    codes = reference.generate(cfg_condition_tensors=conditions, max_gen_len=150, use_sampling=True, top_k=250,
                               cfg_coef=3.0, generators=[torch.Generator().manual_seed(0)])
    return folder, heads, reference, conditions, codes, greedy_codes(reference, conditions, 150)


# Bounds: on the parity fixture the measured KL per token is ~4e-4 (int8) and ~8e-4 (bfloat16), top-1 agreement
# ~0.97, greedy-code agreement over 150 steps 0.74-0.81 (README, speed section). A format that is wrong rather
# than imprecise (a wrong scale, a transposed weight) lands at KL ~1 and chance agreement (1/64).
@pytest.mark.parametrize("dtype", [pytest.param("int8", marks=needs_int8), "bfloat16"])
def test_reduced_formats_stay_close_to_float32_on_the_parity_fixture(parity_model_and_window, dtype):
    folder, heads, reference, conditions, codes, reference_greedy = parity_model_and_window
    candidate = load_lm_model(folder, dtype=dtype, clip_num_heads=heads)
    quality = compare_formats(reference, candidate, conditions, codes, 150, reference_greedy=reference_greedy)
    assert quality.kl_per_token < 5e-3
    assert quality.top1_agreement > 0.9
    assert quality.greedy_agreement > 0.5


def test_int8_on_a_gpu_is_refused_on_one_line_with_exit_2(tiny_checkpoint, tmp_path, capsys):
    image = write_image(tmp_path / "inputs" / "picture.png", Scene(1.0), (64, 48))
    with pytest.raises(SystemExit) as exit_info:
        infer.main(["--video_dir", str(image.parent), "--output_dir", str(tmp_path / "out"),
                    "--model_path", str(tiny_checkpoint), "--device", "cuda", "--dtype", "int8"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "int8 weights run on CPU only" in error
