"""Build VidMuse models and codecs from a Hydra config, and recover the visual config from a state dict's shapes.

The release's `xp.cfg` does not record the visual dimensions (they are constructor defaults in its code), so
for an official checkpoint they are read from tensor shapes. The one value shapes cannot give is the CLIP head
count: official checkpoints use ViT-B/32's (head size 64) unless the caller overrides it. Checkpoints exported
by this project carry the full `VisualConfig` under `video.visual` in their config.
"""

import re
import typing as tp

from audiocraft.models import builders as audiocraft_builders
from audiocraft.models.builders import get_codebooks_pattern_provider
from audiocraft.models.encodec import CompressionModel, EncodecModel
from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider
from audiocraft.utils.utils import dict_from_config
import omegaconf
import torch

from ..environment import CONFIG_DIR
from ..modules.stft_autoencoder import ISTFTDecoder, STFTEncoder
from ..modules.text import TEXT_CONDITION, get_text_conditioner
from ..modules.visual import CLIP_VIT_B32, VisualConfig
from .lm import DESCRIPTOR_CONDITION, VIDEO_CONDITION, VidMuseLM

CLIP_PREFIX = "video_encoder.visual_encoder_model.vision_model."
# ViT-B/32's head size; the head count of an official checkpoint's CLIP is hidden_size / 64.
CLIP_HEAD_DIM = 64


def get_compression_model(cfg: omegaconf.DictConfig) -> CompressionModel:
    """AudioCraft's compression model for `cfg`; with `encodec.autoencoder: stft` (AudioCraft builds SEANet
    only), an EnCodec with this project's STFT autoencoder (`STFTEncoder`, `ISTFTDecoder`; knobs in the config's
    `stft` section) and AudioCraft's quantizer."""
    if cfg.compression_model != "encodec" or cfg.encodec.autoencoder != "stft":
        return audiocraft_builders.get_compression_model(cfg)
    kwargs = dict_from_config(cfg.encodec)
    kwargs.pop("autoencoder")
    quantizer_name = kwargs.pop("quantizer")
    renormalize = kwargs.pop("renormalize", False)
    stack = dict_from_config(cfg.stft)
    frames = {key: stack.pop(key) for key in ("dimension", "hop_length", "n_fft")}
    floor, max_log_magnitude = stack.pop("floor"), stack.pop("max_log_magnitude")
    basis_kernel_size = stack.pop("basis_kernel_size", 1)
    stack.pop("fit_frames", None)  # the solver's (CodecSolver.fit_to_data)
    encoder = STFTEncoder(channels=cfg.channels, floor=floor, **frames, **stack)
    decoder = ISTFTDecoder(channels=cfg.channels, max_log_magnitude=max_log_magnitude,
                           basis_kernel_size=basis_kernel_size, **frames, **stack)
    quantizer = audiocraft_builders.get_quantizer(quantizer_name, cfg, frames["dimension"])
    return EncodecModel(encoder, decoder, quantizer, frame_rate=kwargs["sample_rate"] // frames["hop_length"],
                        renormalize=renormalize, **kwargs).to(cfg.device)


def get_condition_fuser(text: bool = False, music_descriptors: bool = False) -> ConditionFuser:
    """The fuser of a VidMuse LM: the video memory (and the text, if any) is the cross-attention source; the
    embedding of the music descriptors, if any, is added to the input."""
    cross = [VIDEO_CONDITION, TEXT_CONDITION] if text else [VIDEO_CONDITION]
    summed = [DESCRIPTOR_CONDITION] if music_descriptors else []
    return ConditionFuser({"cross": cross, "prepend": [], "sum": summed, "input_interpolate": []})


def get_condition_provider(cfg: omegaconf.DictConfig, output_dim: int) -> ConditioningProvider:
    """AudioCraft's provider with the text conditioner of `cfg.text_conditioner` when `use` is on (empty
    otherwise: the video condition does not go through it)."""
    text_cfg = cfg.get("text_conditioner")
    if not text_cfg or not text_cfg.use:
        return ConditioningProvider({})
    try:
        with torch.device("cpu"):  # a hub T5 is loaded with its weights even when the LM is built on `meta`
            return ConditioningProvider({TEXT_CONDITION: get_text_conditioner(text_cfg, output_dim)})
    except OSError as err:
        raise OSError(f"text conditioner '{text_cfg.name}' not found locally and the Hugging Face hub is "
                      f"unreachable ({err.__class__.__name__}); download it (`huggingface-cli download "
                      f"{text_cfg.name}`) or set text_conditioner.t5_config for a T5 built from a config") from None


def get_visual_config(cfg: omegaconf.DictConfig) -> tp.Optional[VisualConfig]:
    """The `VisualConfig` stored in `cfg.video.visual` (this project's configs), None when absent (the release)."""
    video = cfg.get("video")
    if video is None or video.get("visual") is None:
        return None
    return VisualConfig(**dict_from_config(video.visual))


def load_lm_config(overrides: tp.Sequence[str] = (), config_name: str = "model/lm/vidmuse_lm"
                   ) -> omegaconf.DictConfig:
    """Compose an LM config from the project's Hydra tree, e.g. `load_lm_config(['model/lm/model_scale=tiny'])`."""
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def get_vidmuse_lm(cfg: omegaconf.DictConfig, visual_config: tp.Optional[VisualConfig] = None,
                   device: tp.Optional[tp.Union[str, torch.device]] = None,
                   dtype: tp.Optional[torch.dtype] = None) -> VidMuseLM:
    """Instantiate a `VidMuseLM` from an AudioCraft-style config (`transformer_lm`, `codebooks_pattern`,
    `classifier_free_guidance`) and the visual config (default: `cfg.video.visual`)."""
    visual_config = visual_config or get_visual_config(cfg)
    if visual_config is None:
        raise ValueError("no visual config: pass one or set video.visual in the config")
    kwargs = dict_from_config(cfg.transformer_lm)
    kwargs.pop("q_modeling", None)
    kwargs.pop("cross_attention", None)  # always on; the release's cfg says false while using it
    pattern_provider = get_codebooks_pattern_provider(kwargs["n_q"], cfg.codebooks_pattern)
    guidance = dict_from_config(cfg.classifier_free_guidance)
    attribute_dropout = dict_from_config(cfg.attribute_dropout) if cfg.get("attribute_dropout") else {}
    provider = get_condition_provider(cfg, kwargs["dim"])
    return VidMuseLM(pattern_provider=pattern_provider, condition_provider=provider,
                     fuser=get_condition_fuser(bool(provider.conditioners), visual_config.music_descriptors),
                     visual_config=visual_config,
                     cfg_dropout=guidance["training_dropout"], cfg_coef=guidance["inference_coef"],
                     cfg_coef_beta=guidance.get("inference_coef_beta"),
                     rerank_candidates=(cfg.get("music_descriptors") or {}).get("rerank_candidates", 1),
                     attribute_dropout=attribute_dropout, device=device, dtype=dtype, **kwargs)


def _count_layers(state_dict: tp.Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return max(indices) + 1 if indices else 0


def infer_visual_config(state_dict: tp.Mapping[str, torch.Tensor], lm_num_heads: int,
                        clip_num_heads: tp.Optional[int] = None, local_fps: float = 2.0,
                        num_global_frames: int = 32) -> VisualConfig:
    """Recover the visual config from the shapes of a state dict in this project's key names.

    Args:
        state_dict: LM state dict (keys under `video_encoder.`).
        lm_num_heads: LM head count; the release uses it for the per-frame transformers too.
        clip_num_heads: CLIP head count (not visible in shapes); default hidden_size / 64 as in ViT-B/32.
        local_fps, num_global_frames: frame sampling at inference (the release: 2 fps, 32 global frames).
    """
    def shape(key: str) -> torch.Size:
        if key not in state_dict:
            raise KeyError(f"checkpoint has no '{key}': not a VidMuse LM state dict")
        return state_dict[key].shape

    hidden = shape(CLIP_PREFIX + "embeddings.class_embedding")[0]
    patch_shape = shape(CLIP_PREFIX + "embeddings.patch_embedding.weight")
    num_positions = shape(CLIP_PREFIX + "embeddings.position_embedding.weight")[0]
    grid = round((num_positions - 1) ** 0.5)
    if clip_num_heads is None:
        if hidden % CLIP_HEAD_DIM:
            raise ValueError(f"CLIP width {hidden} is not a multiple of {CLIP_HEAD_DIM}: pass the CLIP head count "
                             "explicitly (clip_num_heads)")
        clip_num_heads = hidden // CLIP_HEAD_DIM
    clip = dict(CLIP_VIT_B32)
    clip.update(
        hidden_size=hidden, num_attention_heads=clip_num_heads,
        num_hidden_layers=_count_layers(state_dict, CLIP_PREFIX + "encoder.layers."),
        intermediate_size=shape(CLIP_PREFIX + "encoder.layers.0.mlp.fc1.weight")[0],
        projection_dim=shape("video_encoder.visual_encoder_model.visual_projection.weight")[0],
        num_channels=patch_shape[1], patch_size=patch_shape[-1], image_size=grid * patch_shape[-1])
    temporal = "video_encoder.local_temporal_transformer."
    qkv_rows = shape(temporal + "layers.0.0.fn.to_qkv.weight")[0]
    if qkv_rows % (3 * lm_num_heads):
        raise ValueError(f"to_qkv has {qkv_rows} rows, not a multiple of 3 x {lm_num_heads} heads")
    return VisualConfig(
        clip=clip, temporal_dim=shape("video_encoder.local_pos_embedding")[-1],
        temporal_depth=_count_layers(state_dict, temporal + "layers."), temporal_heads=lm_num_heads,
        temporal_dim_head=qkv_rows // (3 * lm_num_heads),
        temporal_mlp_dim=shape(temporal + "layers.0.1.fn.net.0.weight")[0],
        cross_frame_depth=_count_layers(state_dict, "video_encoder.cross_frame_transformer.layers."),
        motion_features="video_encoder.motion_mlp.net.0.weight" in state_dict,
        local_fps=local_fps, num_global_frames=num_global_frames)
