"""Load VidMuse checkpoints: the official release's folder layout and this project's exports.

A checkpoint folder holds:
- `state_dict.bin`: `{'best_state': LM state dict, 'xp.cfg': YAML config, 'version', 'exported'}`;
- `compression_state_dict.bin`: either a pointer `{'pretrained': 'facebook/encodec_32khz'}` (the release) or a
  full AudioCraft compression checkpoint `{'best_state', 'xp.cfg'}` (this project's trained codecs).

Files are read with `weights_only=True` (a checkpoint cannot run code) and memory-mapped, and the LM is built
on the `meta` device and then takes the checkpoint's tensors as its parameters, so loading the 7.9 GB release
does not hold two copies in memory.

Key map from the release's LM state dict to ours (`map_official_state_dict`):
- `local_pos_embedding`, `global_pos_embedding`, `visual_encoder_model.*`, `local_temporal_transformer.*`,
  `global_temporal_transformer.*`, `multi_head_cross_attention.*`, `visual_feature_proj.*` -> the same names
  under `video_encoder.`;
- `condition_provider.conditioners.description.*` (the output projection of a T5 conditioner the release builds
  but never calls) -> dropped.
Everything else (`emb.*`, `transformer.*`, `out_norm.*`, `linears.*`) is AudioCraft's `LMModel` and unchanged.
"""

import logging
from pathlib import Path
import re
import typing as tp

from audiocraft.models import builders as audiocraft_builders
from audiocraft.models.encodec import CompressionModel, HFEncodecCompressionModel
import omegaconf
from omegaconf import DictConfig, OmegaConf
import torch

from ..modules.int8 import int8_supported
from ..utils.checkpoint import best_model_state
from ..utils.pages import release_pages, trim_heap
from .builders import get_compression_model, get_vidmuse_lm, get_visual_config, infer_visual_config
from .lm import VidMuseLM

logger = logging.getLogger(__name__)

LM_FILENAMES = ("state_dict.bin", "pytorch_model.bin")
COMPRESSION_FILENAME = "compression_state_dict.bin"
OFFICIAL_HUB_ID = "Zeyue7/VidMuse"
OFFICIAL_LOCAL_DIR = "vidmuse_official"  # where the instructions put the official weights (never over model/)

_OFFICIAL_WEIGHTS_ADVICE = (
    f"For the official VidMuse weights ({LM_FILENAMES[0]}, the same file as its {LM_FILENAMES[1]}, and "
    f"{COMPRESSION_FILENAME}): `huggingface-cli download {OFFICIAL_HUB_ID} --local-dir {OFFICIAL_LOCAL_DIR}` and "
    f"`huggingface-cli download facebook/encodec_32khz --local-dir {OFFICIAL_LOCAL_DIR}/encodec_32khz`, then pass "
    f"that folder (`--model_path {OFFICIAL_LOCAL_DIR}`).")
OFFICIAL_VISUAL_KEYS = ("local_pos_embedding", "global_pos_embedding", "visual_encoder_model.",
                        "local_temporal_transformer.", "global_temporal_transformer.",
                        "multi_head_cross_attention.", "visual_feature_proj.")
UNUSED_OFFICIAL_PREFIX = "condition_provider.conditioners.description."


class ModelFilesMissing(FileNotFoundError):
    """Model files are neither local nor reachable; the message says which files to get and where to put them."""


def load_package(path: tp.Union[str, Path]) -> tp.Dict[str, tp.Any]:
    """`torch.load` a checkpoint file safely (`weights_only=True`), memory-mapped when the format allows it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
        logger.info("%s cannot be memory-mapped (legacy format); reading it into memory", path)
        return torch.load(path, map_location="cpu", weights_only=True)


def _hub_download(repo_id: str, filenames: tp.Sequence[str]) -> Path:
    from huggingface_hub import hf_hub_download
    errors = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id=repo_id, filename=filename))
        except Exception as err:  # offline, missing repo or file: all end in the same advice
            errors.append(f"{filename}: {err.__class__.__name__}")
    raise ModelFilesMissing("; ".join(errors))


def find_lm_file(name_or_path: tp.Union[str, Path]) -> Path:
    """The LM checkpoint file of a folder, a file path, or a Hugging Face hub id (downloaded when reachable)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        for filename in LM_FILENAMES:
            if (path / filename).is_file():
                return path / filename
        raise ModelFilesMissing(f"{path} holds no {LM_FILENAMES[0]}. {_OFFICIAL_WEIGHTS_ADVICE}")
    if not _looks_like_hub_id(str(name_or_path)):
        raise ModelFilesMissing(f"{name_or_path}: no such checkpoint folder or file. {_OFFICIAL_WEIGHTS_ADVICE}")
    try:
        return _hub_download(str(name_or_path), LM_FILENAMES)
    except ModelFilesMissing as err:
        raise ModelFilesMissing(
            f"'{name_or_path}' is not a local folder and could not be fetched from the Hugging Face hub ({err}). "
            f"{_OFFICIAL_WEIGHTS_ADVICE}") from None


def _looks_like_hub_id(name: str) -> bool:
    """`owner/name` with no leading `.` or `/`: a Hugging Face hub id rather than a local path."""
    return re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", name) is not None


def is_official_state_dict(state_dict: tp.Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith("visual_encoder_model.") for key in state_dict)


def map_official_state_dict(state_dict: tp.Mapping[str, torch.Tensor]) -> tp.Dict[str, torch.Tensor]:
    """Rename the release's LM state dict keys to this project's (see the module docstring)."""
    mapped = {}
    for key, value in state_dict.items():
        if key.startswith(UNUSED_OFFICIAL_PREFIX):
            continue
        if key.startswith(OFFICIAL_VISUAL_KEYS):
            key = "video_encoder." + key
        mapped[key] = value
    return mapped


INT8 = "int8"
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
LMDtype = tp.Union[str, torch.dtype]


class UnsupportedDtype(ValueError):
    """The requested weight format cannot run on the requested device."""


def resolve_dtype(dtype: tp.Optional[LMDtype], device: torch.device) -> LMDtype:
    """A dtype name or `torch.dtype` -> `torch.dtype`, or `"int8"`; None / `"auto"` is the device's default."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32  # the release's choice on GPU
    if dtype == INT8:
        if not int8_supported(device):
            raise UnsupportedDtype(f"int8 weights run on CPU only (PyTorch's FBGEMM int8 kernels), not on "
                                   f"{device.type}: use float16 or bfloat16 there")
        return INT8
    if isinstance(dtype, str):
        name = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}.get(dtype, dtype)
        dtype = getattr(torch, name, None) if name in FLOAT_DTYPES else None
    if dtype not in [getattr(torch, name) for name in FLOAT_DTYPES]:
        raise UnsupportedDtype(f"unknown dtype '{dtype}': use one of {', '.join(FLOAT_DTYPES + (INT8,))}")
    assert isinstance(dtype, torch.dtype)
    return dtype


def convert_parameters_(modules: tp.Iterable[torch.nn.Module], dtype: torch.dtype):
    """Cast the floating parameters and buffers held directly by each of `modules` to `dtype`, one tensor at a
    time, giving back the memory-mapped pages of each source once it is converted (no second full copy of the
    model in memory)."""
    for sub in modules:
        for store in (sub._parameters, sub._buffers):
            for name, tensor in store.items():
                if tensor is None or not tensor.is_floating_point() or tensor.dtype == dtype:
                    continue
                converted = tensor.detach().to(dtype)
                store[name] = torch.nn.Parameter(converted, requires_grad=False) \
                    if isinstance(tensor, torch.nn.Parameter) else converted
                release_pages(tensor)


def _release_quantized(tensor: torch.Tensor):
    """After a weight is quantized: its memory-mapped pages, and the heap holes its temporaries left, go back."""
    release_pages(tensor)
    trim_heap()


def load_lm_model(name_or_path: tp.Union[str, Path], device: tp.Union[str, torch.device] = "cpu",
                  dtype: tp.Optional[LMDtype] = None,
                  clip_num_heads: tp.Optional[int] = None) -> VidMuseLM:
    """Load a VidMuse LM (official or exported by this project).

    Args:
        name_or_path: checkpoint folder, `state_dict.bin` file, or hub id.
        device: where to put the model.
        dtype: weight format: `float32`, `float16`, `bfloat16`, or `int8` (CPU only: the transformer's linear
            layers in int8, see `VidMuseLM.quantize_`); default float32 on CPU, float16 on CUDA. The checkpoint
            is memory-mapped and converted tensor by tensor, so a float32 copy of the whole model never sits in
            memory next to the converted one. On a CPU the video encoder stays float32 whatever the dtype (it
            runs once per window, in large products this hardware runs fastest in float32).
        clip_num_heads: CLIP head count when the checkpoint does not record it (official ones: 12 for ViT-B/32).
    Raises:
        UnsupportedDtype: a format the device cannot run (int8 off CPU) or an unknown name.
    """
    device = torch.device(device)
    dtype = resolve_dtype(dtype, device)
    file = find_lm_file(name_or_path)
    pkg = load_package(file)
    cfg = OmegaConf.create(pkg["xp.cfg"])
    state = pkg["best_state"]
    if is_official_state_dict(state):
        state = map_official_state_dict(state)
    visual = get_visual_config(cfg)
    if visual is None:
        video_cfg = cfg.get("video") or {}
        visual = infer_visual_config(state, cfg.transformer_lm.num_heads, clip_num_heads,
                                     local_fps=float(video_cfg.get("video_fps", 2)))
    elif clip_num_heads is not None:
        visual.clip["num_attention_heads"] = clip_num_heads
    with torch.device("meta"):
        lm = get_vidmuse_lm(cfg, visual)
    lm.load_state_dict(state, strict=True, assign=True)
    del pkg, state
    lm.video_encoder.reset_non_persistent_buffers()
    still_meta = [name for name, buffer in lm.named_buffers() if buffer.is_meta]
    assert not still_meta, f"buffers not restored after loading: {still_meta}"
    lm.eval().requires_grad_(False)
    if dtype == INT8:
        lm.quantize_(release=_release_quantized)
    layers_dtype = torch.float32 if dtype == INT8 else dtype
    assert isinstance(layers_dtype, torch.dtype)
    visual_modules = set(lm.video_encoder.modules())
    convert_parameters_([module for module in lm.modules() if module not in visual_modules], layers_dtype)
    convert_parameters_(visual_modules, torch.float32 if device.type == "cpu" else layers_dtype)
    lm = lm.to(device)
    if dtype in (INT8, torch.bfloat16):  # half the cache bytes read per step; measured harmless (README)
        lm.set_decoding_formats(memory_dtype=torch.bfloat16, kv_cache_dtype=torch.bfloat16)
    lm.cfg = _runtime_cfg(cfg, device, dtype, visual)
    return lm


def _runtime_cfg(cfg: DictConfig, device: torch.device, dtype: LMDtype, visual) -> DictConfig:
    """The checkpoint's config with the device, dtype and full visual config of the loaded model."""
    OmegaConf.set_struct(cfg, False)
    cfg.device = str(device)
    cfg.dtype = str(dtype).replace("torch.", "")  # "int8" stays "int8"
    if cfg.get("video") is None:
        cfg.video = {}
    cfg.video.visual = visual.to_dict()
    return cfg


def _hf_encodec(path_or_id: str) -> CompressionModel:
    from transformers import EncodecModel
    return HFEncodecCompressionModel(EncodecModel.from_pretrained(path_or_id))


def load_pretrained_compression_model(name: str, search_dir: tp.Optional[Path] = None) -> CompressionModel:
    """Resolve a compression-model pointer such as `facebook/encodec_32khz`.

    Order: a folder of that name in `search_dir` (a transformers `save_pretrained` folder, e.g.
    `model/encodec_32khz/`), then the Hugging Face cache or hub. Raises `ModelFilesMissing` with what to get.
    """
    name = name.removeprefix("//pretrained/")
    if search_dir is not None:
        local = Path(search_dir) / Path(name).name
        if (local / "config.json").is_file():
            return _hf_encodec(str(local))
    if name in ("dac_44khz", "dac_24khz", "debug_compression_model"):
        return CompressionModel.get_pretrained(name)
    try:
        return _hf_encodec(name)
    except OSError as err:
        where = Path(search_dir or ".") / Path(name).name
        raise ModelFilesMissing(
            f"compression model '{name}' not found: no folder {where}/ and not in the Hugging Face cache "
            f"(hub unreachable or offline: {err.__class__.__name__}). Get config.json and model.safetensors from "
            f"the Hugging Face model '{name}' into {where}/, e.g. `huggingface-cli download {name} --local-dir "
            f"{where}`.") from None


def load_compression_model(name_or_path: tp.Union[str, Path],
                           device: tp.Union[str, torch.device] = "cpu") -> CompressionModel:
    """Load the compression model of a checkpoint folder (or a `compression_state_dict.bin` file, a codec
    training `checkpoint.th`, or a hub id)."""
    path = Path(name_or_path)
    if path.is_dir():
        path = path / COMPRESSION_FILENAME
    if not path.is_file():
        if Path(name_or_path).exists() or not _looks_like_hub_id(str(name_or_path)):
            raise ModelFilesMissing(f"{path} not found: the checkpoint folder needs {COMPRESSION_FILENAME}")
        path = _hub_download(str(name_or_path), [COMPRESSION_FILENAME])
    pkg = load_package(path)
    if "pretrained" in pkg:
        model = load_pretrained_compression_model(pkg["pretrained"], path.parent)
    else:
        cfg = OmegaConf.create(pkg["xp.cfg"])
        cfg.device = "cpu"
        model = get_compression_model(cfg)
        model.load_state_dict(best_model_state(pkg))  # an export, or a codec training checkpoint (checkpoint.th)
    return model.to(device).eval()


def load_compression_model_from_cfg(cfg: omegaconf.DictConfig, device: tp.Union[str, torch.device] = "cpu"):
    """The codec named by `cfg.compression_model_checkpoint` (`//pretrained/NAME`, a checkpoint folder, or a
    `compression_state_dict.bin`), wrapped as AudioCraft does for the LM's config. With no checkpoint, the codec is
    built from the config's `encodec` section with random weights seeded by `cfg.seed` (the same in every
    process, so that training, resuming and export agree): for debugging only."""
    if cfg.compression_model_checkpoint is None:
        logger.warning("no compression_model_checkpoint: building an untrained codec from the config")
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            model = get_compression_model(cfg).eval()
    else:
        name = str(cfg.compression_model_checkpoint)
        path = Path(name.removeprefix("//pretrained/"))
        if path.exists():
            model = load_compression_model(path)
        else:
            model = load_pretrained_compression_model(name)
    return audiocraft_builders.get_wrapped_compression_model(model.to(device), cfg)
