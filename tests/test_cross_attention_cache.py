"""Cached cross-attention: same codes as AudioCraft's module, memory K/V projected once per generation."""

import torch

from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.modules.cross_attention import CachedCrossAttention, cross_attention_modules

from conftest import build_tiny_lm


def random_video(batch: int, frames: int, global_frames: int = 4, seed: int = 0) -> VideoBatch:
    g = torch.Generator().manual_seed(seed)
    return VideoBatch(torch.randint(0, 256, (batch, 3, frames, 224, 224), generator=g, dtype=torch.uint8),
                      torch.randint(0, 256, (batch, 3, global_frames, 224, 224), generator=g, dtype=torch.uint8))


def generate(lm, video, seeds, **kwargs):
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return lm.generate(video=video, max_gen_len=30, generators=generators, **kwargs)


def test_cached_and_uncached_cross_attention_give_identical_codes(tiny_lm_cfg):
    lm = build_tiny_lm(tiny_lm_cfg)
    video = random_video(2, 4)
    assert all(isinstance(m, CachedCrossAttention) for m in cross_attention_modules(lm.transformer))
    cached_sampled = generate(lm, video, [1, 2], use_sampling=True, top_k=20)
    cached_greedy = generate(lm, video, [1, 2], use_sampling=False)
    lm.set_cross_attention_cache(False)
    assert not any(isinstance(m, CachedCrossAttention) for m in cross_attention_modules(lm.transformer))
    uncached_sampled = generate(lm, video, [1, 2], use_sampling=True, top_k=20)
    uncached_greedy = generate(lm, video, [1, 2], use_sampling=False)
    assert torch.equal(cached_sampled, uncached_sampled)
    assert torch.equal(cached_greedy, uncached_greedy)
    assert not torch.equal(cached_sampled, cached_greedy)  # sampling did sample


def test_memory_keys_values_are_projected_once_per_generation(tiny_lm_cfg, monkeypatch):
    lm = build_tiny_lm(tiny_lm_cfg)
    calls = []
    original = CachedCrossAttention._project_memory

    def counting(self, memory):
        calls.append(memory.shape)
        return original(self, memory)

    monkeypatch.setattr(CachedCrossAttention, "_project_memory", counting)
    generate(lm, random_video(1, 2), [0])
    num_layers = len(cross_attention_modules(lm.transformer))
    # 30 decoding steps, one projection per layer for the video (2 frames x 50 distinct tokens) and one for
    # its null (black frames: the same 50 tokens in every frame, projected once)
    assert [shape[1] for shape in calls] == [100, 50] * num_layers
    calls.clear()
    generate(lm, random_video(1, 3), [0])  # a new generation does not reuse the previous memory
    assert [shape[1] for shape in calls] == [150, 50] * num_layers


def test_padding_mask_hides_padded_memory(tiny_lm_cfg):
    """An item padded with extra frames gets the same logits as without the padding."""
    lm = build_tiny_lm(tiny_lm_cfg)
    video = random_video(1, 3)
    padded = VideoBatch(torch.cat([video.local_frames, torch.full_like(video.local_frames[:, :, :2], 77)], dim=2),
                        video.global_frames, local_lengths=torch.tensor([3]))
    codes = torch.randint(0, 48, (1, 4, 12))
    plain = lm.compute_predictions(codes, [], condition_tensors=lm.compute_video_condition(video)).logits
    masked = lm.compute_predictions(codes, [], condition_tensors=lm.compute_video_condition(padded)).logits
    valid = ~torch.isnan(plain)
    torch.testing.assert_close(masked[valid], plain[valid], atol=1e-5, rtol=1e-5)
