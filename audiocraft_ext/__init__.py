"""audiocraft_ext: video-to-music generation (VidMuse) built on AudioCraft.

The package extends AudioCraft (installed from PyPI) with a visual condition: frames read from a video
are encoded by a CLIP vision tower, fused by VidMuse's long-short-term module, and cross-attended by
AudioCraft's `LMModel` over EnCodec tokens.

The main names are importable from the package (`from audiocraft_ext import VidMuse`); they are imported on first
use, so that `import audiocraft_ext.media` does not load the models.
"""

import importlib
import logging
import typing as tp

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "VidMuse": "models.vidmuse",
    "VidMuseLM": "models.lm",
    "VideoBatch": "models.lm",
    "VisualConfig": "modules.visual",
    "get_vidmuse_lm": "models.builders",
    "load_lm_config": "models.builders",
    "load_lm_model": "models.loaders",
    "load_compression_model": "models.loaders",
    "export_lm_model": "models.export",
    "score_tracks": "models.scoring",
    "VideoFrames": "media.video",
    "load_video_frames": "media.video",
    "VideoAudioDataset": "data.video_dataset",
    "load_video_audio_meta": "data.video_dataset",
}
__all__ = ["__version__", *_PUBLIC]

# xFormers logs this when its C++/CUDA kernels do not load (every CPU-only install). AudioCraft imports
# `xformers.ops` at its top but runs its torch attention backend (`efficient_attention_backend: torch`), which
# needs none of those kernels: the message says nothing to a user of this package.
XFORMERS_UNAVAILABLE_NOTICE = "Memory-efficient attention, SwiGLU, sparse and more won't be available"


def _not_xformers_unavailable_notice(record: logging.LogRecord) -> bool:
    return XFORMERS_UNAVAILABLE_NOTICE not in record.getMessage()


# Before anything imports AudioCraft (and so xFormers): other xFormers messages still show.
logging.getLogger("xformers").addFilter(_not_xformers_unavailable_notice)


def __getattr__(name: str) -> tp.Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> tp.List[str]:
    return sorted([*globals(), *_PUBLIC])
