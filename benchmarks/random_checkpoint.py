"""Random-weight VidMuse checkpoints in the release's layout and random videos, for the benchmarks."""

from contextlib import contextmanager
import gc
from pathlib import Path
import tempfile
import time
import typing as tp

from omegaconf import OmegaConf
import torch

from audiocraft_ext.models.builders import get_vidmuse_lm, load_lm_config
from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.models.loaders import OFFICIAL_VISUAL_KEYS


def write_official_layout_checkpoint(scale: str, layers: tp.Optional[int], folder: Path) -> None:
    """A random-weight VidMuse LM of `scale` saved as the release saves it: `state_dict.bin` with the release's
    key names and an `xp.cfg` without the visual config."""
    overrides = [f"model/lm/model_scale={scale}"] + ([f"transformer_lm.num_layers={layers}"] if layers else [])
    cfg = load_lm_config(overrides)
    torch.manual_seed(0)
    lm = get_vidmuse_lm(cfg)
    state = {}
    for key, value in lm.state_dict().items():
        if key.startswith("video_encoder.") and key.removeprefix("video_encoder.").startswith(OFFICIAL_VISUAL_KEYS):
            key = key.removeprefix("video_encoder.")
        state[key] = value
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    container.get("video", {}).pop("visual", None)
    torch.save({"best_state": state, "xp.cfg": OmegaConf.to_yaml(OmegaConf.create(container)),
                "version": "benchmark", "exported": True}, folder / "state_dict.bin")


def random_video(local_frames: int, global_frames: int, seed: int = 0) -> VideoBatch:
    """One video of random 224 x 224 uint8 frames: `local_frames` local and `global_frames` global ones."""
    generator = torch.Generator().manual_seed(seed)
    return VideoBatch(
        torch.randint(0, 256, (1, 3, local_frames, 224, 224), dtype=torch.uint8, generator=generator),
        torch.randint(0, 256, (1, 3, global_frames, 224, 224), dtype=torch.uint8, generator=generator))


@contextmanager
def random_checkpoint(scale: str, layers: tp.Optional[int], folder: tp.Optional[Path] = None
                      ) -> tp.Iterator[Path]:
    """A folder holding a random `scale` checkpoint in the release's layout: `folder` if given (written there
    unless a `state_dict.bin` is already there, and kept), else a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vidmuse_bench_") as tmp:
        folder = folder or Path(tmp)
        if not (folder / "state_dict.bin").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            write_official_layout_checkpoint(scale, layers, folder)
            gc.collect()
            print(f"random {scale} checkpoint in the release's layout written to {folder} in "
                  f"{time.perf_counter() - start:.0f} s")
        yield folder
