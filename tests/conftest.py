"""Shared fixtures: tiny models built from the project's configs, exported checkpoint folders."""

import os
from pathlib import Path

import audiocraft_ext  # noqa: F401  (first: it quiets xFormers' CPU notice before AudioCraft imports xFormers)
from audiocraft.models import builders as audiocraft_builders
from omegaconf import OmegaConf
import pytest
import torch

from audiocraft_ext.models.builders import get_vidmuse_lm, load_lm_config
from audiocraft_ext.models.export import COMPRESSION_FILENAME, LM_FILENAME, export_compression_model, export_lm_model

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
