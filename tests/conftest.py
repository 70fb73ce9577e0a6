"""Shared fixtures: tiny models built from the project's configs, exported checkpoint folders, video-music pairs
and their manifest, and `train.sh` in a subprocess."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time
import typing as tp

import audiocraft_ext  # noqa: F401  (first: it quiets xFormers' CPU notice before AudioCraft imports xFormers)
from audiocraft.models import builders as audiocraft_builders
import numpy as np
from omegaconf import OmegaConf
import pytest
import torch

from audiocraft_ext.data.build_manifest import build_manifest
from audiocraft_ext.models.builders import get_vidmuse_lm, load_lm_config
from audiocraft_ext.models.export import COMPRESSION_FILENAME, LM_FILENAME, export_compression_model, export_lm_model
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.synth.scenes import melody, random_scene, write_scenes

from media import write_video

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "vidmuse_official_tiny"


def parity_fixture_dir() -> Path:
    """The official-parity fixture folder: $VIDMUSE_PARITY_FIXTURE or tests/fixtures/vidmuse_official_tiny."""
    return Path(os.environ.get("VIDMUSE_PARITY_FIXTURE", DEFAULT_FIXTURE))


def tiny_codec_cfg():
    """A tiny AudioCraft EnCodec config with the release's timing: 32 kHz mono, hop 640 (50 Hz), 4 codebooks."""
    return OmegaConf.create({
        "compression_model": "encodec", "sample_rate": 32000, "channels": 1, "device": "cpu",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": 32000, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": 16, "channels": 1, "causal": False, "n_filters": 2, "n_residual_layers": 1,
                   "ratios": [8, 5, 4, 4], "activation": "ELU", "activation_params": {"alpha": 1.0},
                   "norm": "weight_norm", "norm_params": {}, "kernel_size": 7, "residual_kernel_size": 3,
                   "last_kernel_size": 7, "dilation_base": 2, "pad_mode": "constant", "true_skip": True,
                   "compress": 2, "lstm": 0, "disable_norm_outer_blocks": 0,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None,
                               "final_activation_params": None}, "encoder": {}},
        "rvq": {"n_q": 4, "q_dropout": False, "bins": 48, "decay": 0.99, "kmeans_init": False,
                "kmeans_iters": 1, "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0,
                "orthogonal_reg_active_codes_only": False},
    })


@pytest.fixture(scope="session")
def tiny_lm_cfg():
    return load_lm_config(["model/lm/model_scale=tiny"])


def build_tiny_lm(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return get_vidmuse_lm(cfg).eval()


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_cfg):
    return build_tiny_lm(tiny_lm_cfg)


@pytest.fixture(scope="session")
def tiny_codec():
    torch.manual_seed(0)
    return audiocraft_builders.get_compression_model(tiny_codec_cfg()).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_lm, tiny_lm_cfg, tiny_codec) -> Path:
    """A checkpoint folder written by the project's export code: LM + a codec carrying its own weights."""
    folder = tmp_path_factory.mktemp("tiny_model")
    export_lm_model(tiny_lm, tiny_lm_cfg, folder / LM_FILENAME)
    export_compression_model(tiny_codec, tiny_codec_cfg(), folder / COMPRESSION_FILENAME)
    return folder


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Four 5 s video-music pairs (procedural scenes, their own melody track) plus two unusable files."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for i in range(4):
        write_scenes(folder / f"pair{i}.mp4", [random_scene(rng, 2.5), random_scene(rng, 2.5)], 10, (64, 48),
                     audio=melody(5.0, seed=i))
    write_video(folder / "silent.mp4", 20, 10)
    (folder / "broken.mp4").write_text("junk")
    return folder


@pytest.fixture(scope="module")
def manifest(pairs, tmp_path_factory) -> Path:
    egs = tmp_path_factory.mktemp("egs")
    path, _, _ = build_manifest(pairs, "pairs", egs, dset_dir=None, progress=False)
    return path


def train_sh(args: tp.Sequence[str], dora_dir: Path, log: Path, **env_vars: str) -> subprocess.Popen:
    """Start `train.sh ARGS` (Hydra overrides) in its own session, output to `log`, experiments in `dora_dir`."""
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), PYTHON=sys.executable, **env_vars)
    return subprocess.Popen(["bash", str(ROOT / "train.sh"), *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT, start_new_session=True)


def interrupt_at_first_checkpoint(process: subprocess.Popen, dora_dir: Path, log: Path,
                                  timeout: float = 240) -> Path:
    """Wait until the `train_sh` run `process` has written its first checkpoint, kill it (its whole session) and
    return the checkpoint's path; fails with the end of `log` when none comes within `timeout` seconds."""
    deadline = time.time() + timeout
    checkpoint = None
    while time.time() < deadline and process.poll() is None:
        found = list(dora_dir.glob("xps/*/checkpoint.th"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.2)
    assert checkpoint is not None, log.read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return checkpoint


def descriptor_model(folder, tiny_lm_cfg, tiny_codec, **config: tp.Any) -> VidMuse:
    """A tiny model built with music descriptors (`config`: dotted config keys set first, e.g. its default sampling),
    whose LM reads them as a trained one does, exported into `folder` and loaded back."""
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    for key, value in config.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    lm = build_tiny_lm(cfg)
    torch.nn.init.normal_(lm.video_encoder.descriptor_embedding[-1].weight)
    export_lm_model(lm, cfg, folder / LM_FILENAME)
    export_compression_model(tiny_codec, tiny_codec_cfg(), folder / COMPRESSION_FILENAME)
    return VidMuse.get_pretrained(folder, device="cpu")
