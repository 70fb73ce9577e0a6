"""Write checkpoint folders that `VidMuse.get_pretrained` loads (the release's layout).

- `state_dict.bin`: `{'best_state', 'xp.cfg' (YAML), 'version', 'exported'}`; our exports record the full
  visual config under `video.visual` so that nothing has to be guessed from shapes when loading.
- `compression_state_dict.bin`: a pointer `{'pretrained': name}` or a full codec `{'best_state', 'xp.cfg'}`.

Files are written atomically (temporary file + rename): an interrupted export never leaves a half-written file.
"""

from pathlib import Path
import typing as tp

from omegaconf import DictConfig, OmegaConf
import torch
from torch import nn

from .. import __version__
from ..utils.atomic import atomic_output
from ..utils.checkpoint import best_model_state, is_training_checkpoint
from .builders import get_visual_config
from .lm import check_cfg_coef_beta, check_rerank_candidates
from .loaders import COMPRESSION_FILENAME, LM_FILENAMES, load_compression_model_from_cfg

LM_FILENAME = LM_FILENAMES[0]  # what exports write; loading also takes the hub's other name


def atomic_torch_save(obj: tp.Any, path: tp.Union[str, Path]) -> Path:
    """`torch.save` to a temporary file in the same folder, then rename it over `path`."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


# State-dict keys of the LM's video encoder: it stays float32 in a float16 export (its read-out standardises
# statistics whose variances float16 cannot hold, and `load_lm_model` runs it in float32 on a CPU anyway).
VIDEO_ENCODER_PREFIX = "video_encoder."


def _package(state: tp.Mapping[str, torch.Tensor], cfg: DictConfig) -> tp.Dict[str, tp.Any]:
    return {"best_state": {k: v.detach().cpu().contiguous() for k, v in state.items()},
            "xp.cfg": OmegaConf.to_yaml(cfg), "version": __version__, "exported": True}


def lm_state_in(state: tp.Mapping[str, torch.Tensor], dtype: torch.dtype) -> tp.Dict[str, torch.Tensor]:
    """An LM state dict with the floating tensors outside the video encoder cast to `dtype` (float16 halves a
    shipped checkpoint; `load_lm_model` casts them to the format it loads in)."""
    return {k: v.to(dtype) if v.is_floating_point() and not k.startswith(VIDEO_ENCODER_PREFIX) else v
            for k, v in state.items()}


def export_lm_model(lm: nn.Module, cfg: DictConfig, out_file: tp.Union[str, Path]) -> Path:
    """Save a `VidMuseLM`'s weights with its config (the visual config written in full) to `out_file`."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.set_struct(cfg, False)
    if cfg.get("video") is None:
        cfg.video = {}
    cfg.video.visual = lm.visual_config.to_dict()  # type: ignore[attr-defined]
    return atomic_torch_save(_package(lm.state_dict(), cfg), out_file)


def export_pretrained_compression_model(name: str, out_file: tp.Union[str, Path]) -> Path:
    """Save a pointer to a pretrained codec (e.g. `facebook/encodec_32khz`), as the release does."""
    return atomic_torch_save({"pretrained": name, "exported": True, "version": __version__}, out_file)


def export_compression_model(model: nn.Module, cfg: DictConfig, out_file: tp.Union[str, Path]) -> Path:
    """Save an AudioCraft compression model (e.g. a trained `EncodecModel`) with the config that builds it."""
    return atomic_torch_save(_package(model.state_dict(), OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))),
                             out_file)


def export_codec_checkpoint(checkpoint: tp.Union[str, Path], out_file: tp.Union[str, Path]) -> Path:
    """Export a codec training checkpoint (`checkpoint.th` of a `solver=compression` XP, best state) as a
    `compression_state_dict.bin` with weights; an already exported file is copied as it is."""
    pkg = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not is_training_checkpoint(pkg):
        return atomic_torch_save(pkg, out_file)
    cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(pkg["xp.cfg"]), resolve=True))
    return atomic_torch_save(_package(best_model_state(pkg), cfg), out_file)


def export_xp_checkpoint(checkpoint: tp.Union[str, Path], out_dir: tp.Union[str, Path],
                         compression: tp.Optional[str] = None, lm_dtype: torch.dtype = torch.float32,
                         cfg_coef_beta: tp.Optional[float] = None,
                         rerank_candidates: tp.Optional[int] = None) -> Path:
    """Export a training checkpoint (`checkpoint.th` of a Dora XP) into a folder `VidMuse.get_pretrained` loads.

    The LM weights are the checkpoint's best state (evaluated with EMA when EMA is on), not the live weights the
    release exported. The codec is `compression` or the XP's `compression_model_checkpoint`: a name such as
    `facebook/encodec_32khz` becomes a pointer (as the release does), a local codec file (exported, or a codec
    training checkpoint) is saved with its weights, and a codec built from the config too. `lm_dtype` is the
    storage format of the LM's weights outside its video encoder (`lm_state_in`). `cfg_coef_beta`, for a model
    built with music descriptors, is written into its config as its default double guidance
    (`classifier_free_guidance.inference_coef_beta`; default: the run's); `rerank_candidates` likewise its default
    draws per video (`music_descriptors.rerank_candidates`, see `VidMuse.set_generation_params`).
    """
    out_dir = Path(out_dir)
    pkg = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not is_training_checkpoint(pkg):
        raise ValueError(f"{checkpoint} is not a training checkpoint (checkpoint.th) with a best state to export")
    cfg = OmegaConf.create(pkg["xp.cfg"])
    visual = get_visual_config(cfg)
    if visual is None:
        raise ValueError(f"{checkpoint} is not a VidMuse training checkpoint (no video.visual in its config)")
    lm_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    lm_cfg.video.visual = visual.to_dict()
    if cfg_coef_beta is not None:
        check_cfg_coef_beta(cfg_coef_beta, visual)
        OmegaConf.update(lm_cfg, "classifier_free_guidance.inference_coef_beta", cfg_coef_beta, force_add=True)
    if rerank_candidates is not None:
        check_rerank_candidates(rerank_candidates, visual)
        OmegaConf.update(lm_cfg, "music_descriptors.rerank_candidates", rerank_candidates, force_add=True)
    atomic_torch_save(_package(lm_state_in(best_model_state(pkg), lm_dtype), lm_cfg), out_dir / LM_FILENAME)

    source = compression if compression is not None else cfg.get("compression_model_checkpoint")
    codec_out = out_dir / COMPRESSION_FILENAME
    if source is None:  # built from the config: save it with its weights
        model = load_compression_model_from_cfg(cfg)
        export_compression_model(model, lm_cfg, codec_out)
        return out_dir
    name = str(source).removeprefix("//pretrained/")
    path = Path(name)
    if path.is_dir():
        path = path / COMPRESSION_FILENAME
    if path.is_file():
        export_codec_checkpoint(path, codec_out)
    else:
        export_pretrained_compression_model(name, codec_out)
    return out_dir
