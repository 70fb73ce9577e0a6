"""The compact model shipped in model/: the layout infer.sh loads, its size budget, its architecture, and music."""

from pathlib import Path

import pytest
import torch

from audiocraft_ext.models.export import LM_FILENAME
from audiocraft_ext.models.loaders import COMPRESSION_FILENAME
from audiocraft_ext.models.vidmuse import VidMuse

from media import write_video

MODEL_DIR = Path(__file__).resolve().parents[1] / "model"


@pytest.fixture(scope="module")
def shipped():
    return VidMuse.get_pretrained(MODEL_DIR, device="cpu")


def test_files_are_the_official_layout_under_50_mb():
    files = [MODEL_DIR / LM_FILENAME, MODEL_DIR / COMPRESSION_FILENAME]
    assert all(f.is_file() for f in files), "model/ must hold the shipped checkpoint"
    assert sum(f.stat().st_size for f in files) < 50 * 2 ** 20


def test_architecture_is_the_model_card_one(shipped):
    visual = shipped.lm.visual_config
    # tempo and cut times need frame times and motion, which the release's memory lacks
    assert visual.frame_time_embedding and visual.frame_time_rate == 50 and visual.cross_frame_depth == 2
    assert visual.motion_features and visual.local_fps == 4
    # the second edition: music descriptors read from the whole video, best of four draws
    assert visual.music_descriptors and shipped.lm.video_encoder.descriptor_head_fitted
    assert shipped.rerank_candidates == 4
    assert (shipped.sample_rate, shipped.frame_rate, shipped.lm.num_codebooks) == (32000, 50, 4)
    assert shipped.max_duration == 2.0 and shipped.extend_stride == 1.5  # the training window


def test_generates_music_as_long_as_the_video(shipped, tmp_path):
    frames = shipped.load_video(write_video(tmp_path / "clip.mp4", 60, 10))  # 6 s: four windows
    music = shipped.generate([frames], seed=0)[0]
    assert music.shape == (1, 6 * 32000)
    assert torch.isfinite(music).all() and music.abs().max() > 1e-3
    assert torch.equal(music, shipped.generate([frames], seed=0)[0])
