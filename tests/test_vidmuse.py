"""The `VidMuse` wrapper and the loaders: lengths, batches, windows, seeds, dtypes, checkpoint folders."""

import copy
import pickle
import shutil

from omegaconf import OmegaConf
import pytest
import torch

from audiocraft_ext.media.video import VideoFrames, num_local_frames
from audiocraft_ext.models.builders import infer_visual_config, load_lm_config
from audiocraft_ext.models.export import LM_FILENAME, export_lm_model
from audiocraft_ext.models.loaders import ModelFilesMissing, load_compression_model, load_lm_model
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.modules.int8 import int8_supported

from conftest import build_tiny_lm, parity_fixture_dir
from media import write_video


def make_frames(duration: float, seed: int, global_frames: int = 4) -> VideoFrames:
    g = torch.Generator().manual_seed(seed)
    local = torch.randint(0, 256, (3, num_local_frames(duration, 2.0), 224, 224), generator=g, dtype=torch.uint8)
    glob = torch.randint(0, 256, (3, global_frames, 224, 224), generator=g, dtype=torch.uint8)
    return VideoFrames(local, glob, duration)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return VidMuse.get_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def short_window_model(model):
    """Same weights with 2 s windows and a 1.5 s stride, so that sliding windows are cheap to test."""
    windowed = VidMuse("short-windows", model.compression_model, model.lm, max_duration=2.0)
    windowed.set_generation_params(extend_stride=1.5)
    return windowed


def test_export_round_trip_keeps_weights_and_visual_config(tiny_checkpoint, tiny_lm):
    loaded = load_lm_model(tiny_checkpoint)
    assert loaded.visual_config == tiny_lm.visual_config
    original = tiny_lm.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key


def test_generation_window_is_the_training_segment(model):
    assert model.max_duration == 30.0  # the tiny config records no training segment: the release's window
    lm = copy.copy(model.lm)
    lm.cfg = OmegaConf.merge(model.lm.cfg, {"dataset": {"segment_duration": 5}})
    trained = VidMuse("trained-on-5s", model.compression_model, lm)
    assert trained.max_duration == 5.0 and trained.extend_stride == 4.5


def test_music_is_exactly_as_long_as_the_video(model):
    durations = [0.37, 1.0, 2.66]
    audio, tokens = model.generate([make_frames(d, i) for i, d in enumerate(durations)], seed=0,
                                   return_tokens=True)
    for d, wav, codes in zip(durations, audio, tokens):
        assert wav.shape == (1, round(d * 32000))
        assert codes.shape == (4, -(-round(d * 50 * 1000) // 1000))
        assert torch.isfinite(wav).all() and wav.abs().max() > 0


@pytest.mark.parametrize("seed", range(6))
def test_batch_of_different_lengths_matches_each_video_alone(short_window_model, seed):
    durations = [4.3, 0.7, 1.5, 3.1]  # 3, 1, 1 and 2 windows; different last-window lengths
    videos = [make_frames(d, i) for i, d in enumerate(durations)]
    batch_audio, batch_tokens = short_window_model.generate(videos, seed=seed, return_tokens=True)
    for video, audio, codes in zip(videos, batch_audio, batch_tokens):
        alone_audio, alone_tokens = short_window_model.generate([video], seed=seed, return_tokens=True)
        assert torch.equal(codes, alone_tokens[0])
        torch.testing.assert_close(audio, alone_audio[0])


def test_windows_continue_from_the_prompt(short_window_model):
    """Window w starts with the previous window's last 0.5 s: with greedy decoding of the same frames, the whole
    sequence equals generating each window with that prompt by hand."""
    video = make_frames(3.0, 5)
    tokens = short_window_model.generate([video], seed=0, return_tokens=True)[1][0]
    assert tokens.shape == (4, 150)
    lm = short_window_model.lm
    gen = torch.Generator().manual_seed(0)
    batch = short_window_model.window_batch([video], [(0, 4)])
    first = lm.generate(None, video=batch, generators=[gen], max_gen_len=100, **short_window_model.generation_params)
    assert torch.equal(tokens[:, :100], first[0])
    batch = short_window_model.window_batch([video], [(3, 3)])
    second = lm.generate(first[:, :, 75:], video=batch, generators=[gen], max_gen_len=75,
                         **short_window_model.generation_params)
    assert torch.equal(tokens[:, 100:], second[0, :, 25:])


def test_seed_makes_runs_reproducible_without_touching_global_rng(model):
    video = make_frames(1.0, 3)
    torch.manual_seed(123)
    expected_next = torch.rand(4)
    torch.manual_seed(123)
    first = model.generate([video], seed=42, return_tokens=True)[1][0]
    assert torch.equal(torch.rand(4), expected_next)
    again = model.generate([video], seed=42, return_tokens=True)[1][0]
    other = model.generate([video], seed=43, return_tokens=True)[1][0]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_progress_callback_reports_decoding_steps(short_window_model):
    seen = []
    short_window_model.set_custom_progress_callback(lambda done, total: seen.append((done, total)))
    try:
        short_window_model.generate([make_frames(3.0, 1)], seed=0)
    finally:
        short_window_model.set_custom_progress_callback(None)
    totals = {total for _, total in seen}
    assert totals == {100 + 50}  # window 1: 100 steps; window 2: 75 tokens minus the 25-token prompt
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 150


def test_generate_from_a_video_file(model, tmp_path):
    path = write_video(tmp_path / "clip.mp4", 33, 25)  # 1.32 s
    audio = model.generate([path], seed=0)
    assert audio[0].shape == (1, round(1.32 * 32000))


def test_bfloat16_weights(tiny_checkpoint):
    model = VidMuse.get_pretrained(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert next(model.lm.parameters()).dtype == torch.bfloat16
    audio = model.generate([make_frames(0.5, 0)], seed=0)
    assert audio[0].shape == (1, 16000) and torch.isfinite(audio[0]).all()


@pytest.mark.skipif(not int8_supported("cpu"), reason="no FBGEMM int8 kernels in this PyTorch build")
def test_int8_weights_over_several_windows(tiny_checkpoint):
    loaded = VidMuse.get_pretrained(tiny_checkpoint, dtype="int8")  # int8 runs on the CPU by default
    assert loaded.device.type == "cpu" and loaded.lm.is_int8
    model = VidMuse("int8", loaded.compression_model, loaded.lm, max_duration=1.5)
    model.set_generation_params(extend_stride=1.0)
    audio = model.generate([make_frames(2.7, 0)], seed=0)  # three windows, each prompted by the previous one
    assert audio[0].shape == (1, round(2.7 * 32000)) and torch.isfinite(audio[0]).all()


def test_frame_time_embedding_tells_frame_order(tmp_path, tiny_codec):
    cfg = load_lm_config(["model/lm/model_scale=tiny", "video.visual.frame_time_embedding=true"])
    lm = build_tiny_lm(cfg)
    assert lm.visual_config.frame_time_embedding
    video = make_frames(2.0, 0)
    reversed_video = VideoFrames(video.local_frames.flip(1), video.global_frames, 2.0)
    from audiocraft_ext.models.lm import VideoBatch

    def memory(frames):
        batch = VideoBatch(frames.local_frames[None], frames.global_frames[None])
        return lm.compute_video_condition(batch)["video"][0][0].view(4, 50, -1)

    # with time information, frame k of the reversed video is not frame (3 - k) of the original
    assert not torch.allclose(memory(reversed_video).flip(0), memory(video), atol=1e-4)
    export_lm_model(lm, cfg, tmp_path / LM_FILENAME)
    assert load_lm_model(tmp_path).visual_config.frame_time_embedding


def test_cross_frame_transformer_lets_frames_see_each_other(tmp_path, tiny_codec):
    from audiocraft_ext.models.lm import VideoBatch
    video = make_frames(2.0, 0)
    changed = video.local_frames.clone()
    changed[:, 3] = 255 - changed[:, 3]  # only the last local frame differs

    def first_frame_memory(lm, local):
        batch = VideoBatch(local[None], video.global_frames[None])
        return lm.compute_video_condition(batch)["video"][0][0].view(4, 50, -1)[0]

    release = build_tiny_lm(load_lm_config(["model/lm/model_scale=tiny"]))
    assert release.video_encoder.cross_frame_transformer is None
    assert torch.allclose(first_frame_memory(release, video.local_frames), first_frame_memory(release, changed))
    cfg = load_lm_config(["model/lm/model_scale=tiny", "video.visual.cross_frame_depth=2",
                          "video.visual.frame_time_embedding=true", "video.visual.frame_time_rate=50"])
    lm = build_tiny_lm(cfg)
    assert not torch.allclose(first_frame_memory(lm, video.local_frames), first_frame_memory(lm, changed))
    # padding after an item's frames (a longer video in the same batch) is not attended
    short = VideoBatch(video.local_frames[None, :, :2], video.global_frames[None])
    padded = VideoBatch(changed[None], video.global_frames[None], local_lengths=torch.tensor([2]))
    alone, in_batch = (lm.compute_video_condition(b)["video"][0][0, :100] for b in (short, padded))
    assert torch.allclose(alone, in_batch, atol=1e-5)
    export_lm_model(lm, cfg, tmp_path / LM_FILENAME)
    loaded = load_lm_model(tmp_path)
    assert (loaded.visual_config.cross_frame_depth, loaded.visual_config.frame_time_rate) == (2, 50)
    assert torch.equal(first_frame_memory(loaded, changed), first_frame_memory(lm, changed))
    state = {f"video_encoder.{k}": v for k, v in lm.video_encoder.state_dict().items()}
    inferred = infer_visual_config(state, cfg.transformer_lm.num_heads,
                                   clip_num_heads=cfg.video.visual.clip.num_attention_heads)
    assert inferred.cross_frame_depth == 2


def test_motion_features_see_frame_changes_and_start_as_identity(tmp_path, tiny_codec):
    from audiocraft_ext.models.lm import VideoBatch
    from audiocraft_ext.modules.visual import frame_changes
    tokens = torch.arange(24.0).view(1, 4, 3, 2) ** 2
    changes = frame_changes(tokens, torch.tensor([3]))
    assert (changes[:, 0] == 0).all() and (changes[:, 3] == 0).all()  # first frame; padding past the length
    assert torch.equal(changes[:, 1:3], tokens[:, 1:3] - tokens[:, :2])

    video = make_frames(2.0, 0)
    memory = lambda lm, local: lm.compute_video_condition(  # noqa: E731
        VideoBatch(local[None], video.global_frames[None]))["video"][0]
    cfg = load_lm_config(["model/lm/model_scale=tiny", "video.visual.motion_features=true"])
    lm = build_tiny_lm(cfg)
    release = build_tiny_lm(load_lm_config(["model/lm/model_scale=tiny"]))
    release.load_state_dict(lm.state_dict(), strict=False)
    # the MLP's output starts at zero: a release memory fine-tuned with motion features is unchanged at first
    assert torch.allclose(memory(lm, video.local_frames), memory(release, video.local_frames), atol=1e-6)
    with torch.no_grad():
        torch.nn.init.normal_(lm.video_encoder.motion_mlp.net[-2].weight)
    assert not torch.allclose(memory(lm, video.local_frames), memory(release, video.local_frames), atol=1e-4)
    export_lm_model(lm, cfg, tmp_path / LM_FILENAME)
    assert torch.equal(memory(load_lm_model(tmp_path), video.local_frames), memory(lm, video.local_frames))
    state = {f"video_encoder.{k}": v for k, v in lm.video_encoder.state_dict().items()}
    inferred = infer_visual_config(state, cfg.transformer_lm.num_heads,
                                   clip_num_heads=cfg.video.visual.clip.num_attention_heads)
    assert inferred.motion_features and not release.visual_config.motion_features


def test_official_layout_resolves_codec_pointer_to_sibling_folder(tmp_path):
    fixture = parity_fixture_dir()
    for name in ("state_dict.bin", "compression_state_dict.bin"):
        shutil.copy(fixture / name, tmp_path / name)
    shutil.copytree(fixture / "encodec_32khz", tmp_path / "encodec_32khz")
    codec = load_compression_model(tmp_path)
    assert type(codec).__name__ == "HFEncodecCompressionModel" and codec.cardinality == 64


def test_missing_codec_gives_one_clear_error(tmp_path, monkeypatch):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no hub here; fail fast
    fixture = parity_fixture_dir()
    for name in ("state_dict.bin", "compression_state_dict.bin"):
        shutil.copy(fixture / name, tmp_path / name)
    with pytest.raises(ModelFilesMissing) as err:
        VidMuse.get_pretrained(tmp_path, device="cpu", clip_num_heads=2)
    message = str(err.value)
    assert "facebook/encodec_32khz" in message and str(tmp_path / "encodec_32khz") in message


def test_missing_weights_give_one_clear_error(tmp_path):
    with pytest.raises(ModelFilesMissing, match="state_dict.bin"):
        VidMuse.get_pretrained(tmp_path, device="cpu")
    with pytest.raises(ModelFilesMissing, match="no such checkpoint"):
        VidMuse.get_pretrained(tmp_path / "nowhere", device="cpu")


def test_checkpoints_cannot_run_code(tmp_path):
    """Files are loaded with weights_only=True: pickled objects other than tensors and containers are refused."""
    torch.save({"best_state": {}, "xp.cfg": OmegaConf.create({"a": 1}), "exported": True}, tmp_path / LM_FILENAME)
    with pytest.raises(pickle.UnpicklingError):
        load_lm_model(tmp_path)
