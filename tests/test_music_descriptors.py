"""Music descriptors (onset rate, register), their prediction from the video and the conditioning on them."""

import math

import pytest
import torch

from audiocraft_ext.models.export import COMPRESSION_FILENAME, LM_FILENAME, export_compression_model, export_lm_model
from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.modules.music_descriptors import music_descriptors, register
from audiocraft_ext.modules.visual import token_statistics
from audiocraft_ext.solvers.vidmuse import descriptor_loss
from audiocraft_ext.synth.evaluate import predicted_descriptors

from conftest import build_tiny_lm, tiny_codec_cfg

SR = 32000


def plucks(rate: float, freq: float, seconds: float = 4.0) -> torch.Tensor:
    """Decaying tones of `freq` Hz, `rate` per second: `[1, N]`."""
    t = torch.arange(int(seconds * SR)) / SR
    phase = torch.remainder(t, 1 / rate)
    return (torch.sin(2 * math.pi * freq * t) * torch.exp(-phase * 12))[None]


def test_token_statistics_grow_with_motion_and_ignore_padding_frames():
    g = torch.Generator().manual_seed(0)
    start, step = torch.randn(1, 1, 4, 8, generator=g), torch.randn(1, 1, 4, 8, generator=g)
    frames = torch.arange(5.0)[None, :, None, None]                       # [1, T, 1, 1]
    slow, fast = start + 0.1 * frames * step, start + 0.4 * frames * step   # [1, T, P, D]
    glob = torch.randn(1, 3, 4, 8, generator=g)
    stats = token_statistics(glob.expand(2, -1, -1, -1), torch.cat([slow, fast]))
    assert stats.shape == (2, 32)
    picture = torch.cat([glob.mean((1, 2)), glob.std((1, 2))], -1)[0]     # the same picture for both
    assert torch.allclose(stats[0, :16], picture) and torch.allclose(stats[1, :16], picture)
    assert torch.allclose(stats[1, 16:24] - stats[0, 16:24], torch.full((8,), math.log(4.0)), atol=0.01)
    # a padded item's frames past its length change nothing; one valid frame has no change at all
    padded = torch.cat([slow[:, :3], torch.randn(1, 2, 4, 8, generator=g)], 1)
    lengths = torch.tensor([3, 1])
    masked = token_statistics(glob.expand(2, -1, -1, -1), torch.cat([padded, padded]), lengths)
    assert torch.allclose(masked[0], token_statistics(glob, slow[:, :3])[0], atol=1e-5)
    assert torch.allclose(masked[1, 16:], torch.full((16,), math.log(1e-4)), atol=1e-4)


def test_onset_rate_counts_the_notes_and_register_finds_their_pitch():
    wav = torch.stack([plucks(1.5, 110.0), plucks(3.0, 220.0), plucks(6.0, 440.0)])  # [3, 1, N]
    rates = torch.expm1(music_descriptors(wav, SR)[:, 0])
    assert torch.allclose(rates, torch.tensor([1.5, 3.0, 6.0]), atol=0.5), rates
    assert torch.allclose(register(wav, SR), torch.log2(torch.tensor([110.0, 220.0, 440.0])), atol=0.15)


def test_padding_past_an_items_length_is_not_counted():
    wav = plucks(4.0, 220.0)[None]
    padded = torch.cat([wav, torch.zeros_like(wav)], dim=-1)
    own = music_descriptors(wav, SR)
    assert torch.allclose(music_descriptors(padded, SR, torch.tensor([wav.shape[-1]])), own, atol=0.05)
    assert music_descriptors(padded, SR)[0, 0] < own[0, 0] - 0.3  # counted over the padding, the rate halves


def test_descriptor_loss_counts_the_chosen_items_only():
    predicted = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    target = torch.zeros(3, 2)
    assert descriptor_loss(predicted, target, torch.tensor([True, True, False])) == 0.5
    assert descriptor_loss(predicted, target, torch.zeros(3, dtype=torch.bool)) == 0


def test_music_descriptors_are_predicted_and_teacher_values_replace_them(tiny_lm_cfg):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    lm = build_tiny_lm(cfg)
    encoder = lm.video_encoder
    torch.nn.init.normal_(encoder.descriptor_embedding[-1].weight)  # zero at start: the memory would not change
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 3, 2, 224, 224), generator=g, dtype=torch.uint8)
    video = VideoBatch(frames, frames)
    conditions, predicted = lm.video_condition(video)
    assert predicted.shape == (3, 2)
    memory = conditions["video"][0]
    plain = encoder(frames, frames)
    assert torch.allclose(memory, encoder.add_descriptors(plain, predicted), atol=1e-5)

    music = torch.tensor([[1.2, 8.0], [float("nan")] * 2, [2.0, 9.0]])  # the middle item keeps its prediction
    taught = lm.video_condition(VideoBatch(frames, frames, music_descriptors=music))[0]["video"][0]
    used = torch.cat([encoder.normalize_descriptors(music[:1]), predicted[1:2],
                      encoder.normalize_descriptors(music[2:])])
    assert torch.allclose(taught, encoder.add_descriptors(plain, used), atol=1e-5)
    assert not torch.allclose(taught[0], memory[0], atol=1e-3)
    assert torch.allclose(taught[1], memory[1], atol=1e-5)
    mean, std = torch.tensor(cfg.video.visual.descriptor_mean), torch.tensor(cfg.video.visual.descriptor_std)
    assert torch.allclose(encoder.normalize_descriptors(mean + std), torch.ones(2))

    # the head learns from the descriptor loss alone: the LM's condition carries no gradient to it
    predicted.sum().backward()
    assert encoder.descriptor_head[-1].weight.grad is not None
    encoder.zero_grad()
    lm.video_condition(video)[0]["video"][0].sum().backward()
    assert encoder.descriptor_head[-1].weight.grad is None or not encoder.descriptor_head[-1].weight.grad.any()


def test_the_head_standardises_by_the_batch_in_training_and_by_running_statistics_otherwise(tiny_lm_cfg):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    lm = build_tiny_lm(cfg)
    encoder = lm.video_encoder
    norm = encoder.descriptor_head[0]
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, 3, 3, 224, 224), generator=g, dtype=torch.uint8)
    lm.train()
    before = norm.running_mean.clone()
    pair = lm.video_condition(VideoBatch(frames, frames))[1]
    assert not torch.allclose(norm.running_mean, before)  # a batch of two updates the running statistics
    updated = norm.running_mean.clone()
    alone = lm.video_condition(VideoBatch(frames[:1], frames[:1]))[1]  # one item per GPU: no batch statistics
    assert torch.equal(norm.running_mean, updated)
    lm.eval()
    assert torch.allclose(alone, lm.video_condition(VideoBatch(frames[:1], frames[:1]))[1], atol=1e-5)
    assert not torch.allclose(pair[:1], alone, atol=1e-3)


def test_an_exported_model_predicts_its_descriptors_from_a_video(tmp_path, tiny_lm_cfg, tiny_codec, pairs):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    lm = build_tiny_lm(cfg)
    export_lm_model(lm, cfg, tmp_path / LM_FILENAME)
    export_compression_model(tiny_codec, tiny_codec_cfg(), tmp_path / COMPRESSION_FILENAME)
    model = VidMuse.get_pretrained(tmp_path, device="cpu")
    for key, value in lm.state_dict().items():  # the head and the embedding load with the rest
        assert torch.equal(model.lm.state_dict()[key], value), key
    frames = model.load_video(pairs / "pair0.mp4")
    predicted = predicted_descriptors(model, frames)
    assert model.max_duration >= 5  # one window holds the whole video
    window = VideoBatch(frames.local_frames[None], frames.global_frames[None])
    assert predicted == pytest.approx(lm.video_condition(window)[1][0].tolist(), abs=1e-5)
