"""Music descriptors (onset rate, register) and the visual memory's auxiliary loss on them."""

import math

import torch

from audiocraft_ext.modules.music_descriptors import correlation_loss, music_descriptors, register
from audiocraft_ext.solvers.vidmuse import descriptor_directions, memory_descriptor_loss

SR = 32000


def plucks(rate: float, freq: float, seconds: float = 4.0) -> torch.Tensor:
    """Decaying tones of `freq` Hz, `rate` per second: `[1, N]`."""
    t = torch.arange(int(seconds * SR)) / SR
    phase = torch.remainder(t, 1 / rate)
    return (torch.sin(2 * math.pi * freq * t) * torch.exp(-phase * 12))[None]


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


def test_correlation_loss_ignores_scale_and_offset():
    target = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert correlation_loss(100 * target + 7, target) < 1e-6
    assert torch.isclose(correlation_loss(-target, target), torch.tensor(2.0))
    assert correlation_loss(-target, target, torch.tensor([True, True, False, False])) == 0  # too few items


def test_memory_descriptor_loss_trains_the_memory_towards_the_descriptors():
    torch.manual_seed(0)
    descriptors = torch.randn(8, 2)
    memory = torch.randn(8, 5, 16, requires_grad=True)
    items = torch.ones(8, dtype=torch.bool)
    optimizer = torch.optim.SGD([memory], lr=1.0)
    before = memory_descriptor_loss(memory, None, descriptors, items).item()
    for _ in range(50):
        optimizer.zero_grad()
        memory_descriptor_loss(memory, None, descriptors, items).backward()
        optimizer.step()
    assert memory_descriptor_loss(memory, None, descriptors, items) < min(0.05, before)
    directions = descriptor_directions(16)
    assert torch.allclose(directions.T @ directions, torch.eye(2), atol=1e-5)
    assert torch.equal(directions, descriptor_directions(16))  # fixed: nothing to save with the model
    masked = torch.ones(8, 5, dtype=torch.bool)
    masked[:, 3:] = False
    changed = memory.detach().clone()
    changed[:, 3:] += 100  # padding tokens do not count
    assert torch.isclose(memory_descriptor_loss(changed, masked, descriptors, items),
                         memory_descriptor_loss(memory.detach()[:, :3], None, descriptors, items))
