"""Text conditioning next to the video: AudioCraft's T5 conditioner, from the hub or built from a config.

AudioCraft's `T5Conditioner` loads a T5 by hub name (`t5-base`, ...). `ConfigT5Conditioner` builds the same
conditioner from a `T5Config` with random weights and the byte-level ByT5 tokenizer (which needs no vocabulary
file), so that tests and small experiments need no download; its T5 weights are saved in checkpoints.
"""

import typing as tp

from audiocraft.modules.conditioners import T5Conditioner, TextConditioner
from audiocraft.utils.autocast import TorchAutocast
import omegaconf
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

TEXT_CONDITION = "description"


class ConfigT5Conditioner(T5Conditioner):
    """`T5Conditioner` with a T5 encoder built from `t5_config` (random weights, byte tokenizer).

    Args:
        t5_config: `T5Config` keyword arguments (d_model, num_layers, num_heads, d_kv, d_ff, ...).
        output_dim: LM width.
        finetune: train the T5 with the LM (otherwise frozen); its weights are saved in both cases.
        device: device of the tokenized inputs.
        word_dropout: probability of dropping each word in training.
    """

    def __init__(self, t5_config: tp.Dict[str, tp.Any], output_dim: int, finetune: bool = False,
                 device: str = "cpu", word_dropout: float = 0.0, normalize_text: bool = False):
        tokenizer = ByT5Tokenizer()
        config = T5Config(**{"vocab_size": len(tokenizer), "dropout_rate": 0.0, **t5_config})
        TextConditioner.__init__(self, config.d_model, output_dim)
        self.device = device
        self.name = "config"
        self.finetune = finetune
        self.word_dropout = word_dropout
        self.autocast = TorchAutocast(enabled=False)
        self.normalize_text = False
        if normalize_text:
            raise ValueError("normalize_text needs spaCy models; not available for the config-built T5")
        self.t5_tokenizer = tokenizer
        self.t5 = T5EncoderModel(config).train(mode=finetune)
        # `shared` and `encoder.embed_tokens` are one module under two names; keep one, so that state dicts
        # have no alias (AudioCraft's EMA tracks parameters once and reloads them strictly).
        del self.t5.shared
        self.t5.requires_grad_(finetune)

    def train(self, mode: bool = True):
        super().train(mode)
        self.t5.train(mode and self.finetune)  # a frozen T5 stays in eval mode (no dropout) while the LM trains
        return self


def get_text_conditioner(cfg: omegaconf.DictConfig, output_dim: int, device: str = "cpu") -> TextConditioner:
    """The text conditioner of `cfg.text_conditioner`: AudioCraft's `T5Conditioner` for a hub `name`, else a
    `ConfigT5Conditioner` from `t5_config`."""
    if cfg.get("t5_config"):
        return ConfigT5Conditioner(dict(cfg.t5_config), output_dim, finetune=cfg.finetune, device=device,
                                   word_dropout=cfg.word_dropout, normalize_text=cfg.normalize_text)
    return T5Conditioner(cfg.name, output_dim, finetune=cfg.finetune, device=device, word_dropout=cfg.word_dropout,
                         normalize_text=cfg.normalize_text)
