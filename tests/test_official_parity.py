"""Parity with the official VidMuse code on a fixture it wrote (tiny random weights, official checkpoint format).

The fixture folder is $VIDMUSE_PARITY_FIXTURE, by default `tests/fixtures/vidmuse_official_tiny` (its README says
how the official code wrote it). Everything is read from its `xp.cfg` and tensor shapes, except the CLIP head
count, taken from `tiny_arch.json`.
A missing fixture fails these tests.
"""

import json

import pytest
import torch

from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.models.loaders import load_compression_model
from audiocraft_ext.models.vidmuse import VidMuse

from conftest import parity_fixture_dir

ATOL = 1e-4


@pytest.fixture(scope="module")
def fixture():
    folder = parity_fixture_dir()
    assert (folder / "state_dict.bin").is_file(), f"parity fixture missing: {folder}"
    inputs = torch.load(folder / "inputs.pt", weights_only=True)
    expected = torch.load(folder / "expected.pt", weights_only=True)
    clip_heads = json.loads((folder / "tiny_arch.json").read_text())["clip_vision_config"]["num_attention_heads"]
    model = VidMuse.get_pretrained(folder, device="cpu", clip_num_heads=clip_heads)
    video = VideoBatch(inputs["local_frames"], inputs["global_frames"])
    return model, inputs, expected, video


def test_video_embedding_matches(fixture):
    model, _, expected, video = fixture
    memory, mask = model.lm.compute_video_condition(video, with_null=True)["video"]
    assert memory.shape == (2,) + tuple(expected["video_emb"].shape[1:])
    assert mask.all()
    torch.testing.assert_close(memory[:1], expected["video_emb"], atol=ATOL, rtol=0)
    torch.testing.assert_close(memory[1:], expected["video_emb_null"], atol=ATOL, rtol=0)


def test_teacher_forced_logits_match(fixture):
    model, inputs, expected, video = fixture
    out = model.lm.compute_predictions(inputs["codes"], [], condition_tensors=model.lm.compute_video_condition(video))
    assert torch.equal(out.mask, expected["mask"])
    valid = expected["mask"]
    torch.testing.assert_close(out.logits[valid], expected["logits"][valid], atol=ATOL, rtol=0)
    assert torch.isnan(out.logits[~valid]).all()


def test_greedy_cfg_codes_match(fixture):
    model, inputs, expected, video = fixture
    codes = model.lm.generate(video=video, max_gen_len=inputs["gen_steps"], use_sampling=False,
                              cfg_coef=inputs["cfg_coef"])
    assert torch.equal(codes, expected["greedy_codes"])


def test_codec_decode_and_encode_match(fixture):
    _, inputs, expected, _ = fixture
    codec = load_compression_model(parity_fixture_dir())
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks) == (32000, 50, 4)
    with torch.no_grad():
        torch.testing.assert_close(codec.decode(inputs["codes"]), expected["decoded_wav"], atol=ATOL, rtol=0)
        assert torch.equal(codec.encode(inputs["sine_wav"])[0], expected["encoded_codes"])


def test_generation_leaves_global_rng_alone(fixture):
    """The release reseeds the global RNG to 1234 in every generate call; ours must not touch it."""
    model, _, _, video = fixture
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    model.lm.generate(video=video, max_gen_len=5, use_sampling=True, generators=[torch.Generator().manual_seed(0)])
    assert torch.equal(torch.rand(3), expected_next)
