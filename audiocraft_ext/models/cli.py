"""A model from the command line: the flags that every command-line face shares, and one loader.

The CLIs that load a model (`infer`, `recommend`, `evaluate`, `synth.evaluate`) and the demo take the same flags
(`--model_path`, `--device`, `--dtype`, `--clip_num_heads`); a model that cannot be loaded ends the command with
one line on stderr naming the folder and the reason, and exit status 2.
"""

import argparse
import contextlib
from dataclasses import dataclass
import functools
import logging
from pathlib import Path
import sys
import typing as tp
import warnings

from audiocraft.models.encodec import CompressionModel

from ..utils.checksum import file_checksum
from ..utils.devices import auto_device
from .loaders import ModelFilesMissing, find_lm_file, load_compression_model
from .vidmuse import VidMuse

DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16", "int8")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model_path`, `--device`, `--dtype`, `--clip_num_heads`: what `load_model_from_args` reads."""
    group = parser.add_argument_group("model")
    group.add_argument("--model_path", default="./model", help="checkpoint folder (state_dict.bin + "
                       "compression_state_dict.bin) or Hugging Face hub id")
    group.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    group.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                       help="LM weight format (auto: float32 on CPU, float16 on CUDA; int8: CPU only, about 4x "
                       "faster decoding than float32, see the README's speed section)")
    group.add_argument("--clip_num_heads", type=int, default=None,
                       help="CLIP head count for checkpoints that do not record it (default: ViT-B/32's 12)")


def add_codebooks_argument(parser: argparse.ArgumentParser) -> None:
    """`--codebooks`: the codebooks the likelihood score reads (see `models.scoring.score_tracks`)."""
    parser.add_argument("--codebooks", type=lambda value: int(value) or None, default=1,
                        help="score the first N codebooks (0: all); the first holds what a picture explains")


def setup_logging(level: int = logging.INFO) -> None:
    """The CLIs' output: `LEVEL logger: message` lines at `level`; AudioCraft's per-call notices and the
    deprecation warning its codec raises at every load (nothing a user can act on) left out."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("audiocraft").setLevel(max(level, logging.WARNING))
    warnings.filterwarnings("ignore", message=r"`torch\.nn\.utils\.weight_norm` is deprecated",
                            category=FutureWarning)


@dataclass
class LoadedModel:
    """A model loaded for a command, and the file its LM weights came from."""
    model: VidMuse
    lm_file: Path

    @functools.cached_property
    def checksum(self) -> str:
        """sha256 of the LM weights file (recorded beside the music made with it)."""
        return file_checksum(self.lm_file)


@contextlib.contextmanager
def _load_errors_end_the_command(what: str, path: tp.Union[str, Path]):
    """Whatever the file holds (missing, corrupt, another kind of checkpoint), a failed load prints
    `error: cannot load the WHAT from PATH: REASON` on one line of stderr and exits with status 2."""
    try:
        yield
    except Exception as err:
        reason = str(err) if isinstance(err, ModelFilesMissing) else f"{err.__class__.__name__}: {err}"
        print(f"error: cannot load the {what} from {path}: {' '.join(reason.split())}", file=sys.stderr)
        raise SystemExit(2) from None


def load_model(model_path: tp.Union[str, Path], device: str = "auto", dtype: str = "auto",
               clip_num_heads: tp.Optional[int] = None) -> LoadedModel:
    """Load a `VidMuse` for a command (`device` and `dtype` as the flags take them).

    A model that cannot be loaded (missing files, not a VidMuse checkpoint, a corrupt file, ...) prints
    `error: cannot load the model from PATH: REASON` on one line of stderr and exits with status 2.
    """
    with _load_errors_end_the_command("model", model_path):
        lm_file = find_lm_file(model_path)
        model = VidMuse.get_pretrained(model_path, device=None if device == "auto" else device,
                                       dtype=None if dtype == "auto" else dtype, clip_num_heads=clip_num_heads)
    return LoadedModel(model, lm_file)


def load_codec(path: tp.Union[str, Path], device: str = "auto") -> CompressionModel:
    """Load a codec alone (a codec training `checkpoint.th`, a checkpoint folder, a `compression_state_dict.bin`
    or a hub id) for a command; a codec that cannot be loaded ends the command as in `load_model`."""
    with _load_errors_end_the_command("codec", path):
        return load_compression_model(path, auto_device(device))


def load_model_from_args(args: argparse.Namespace) -> LoadedModel:
    """`load_model` with the flags of `add_model_arguments`."""
    return load_model(args.model_path, args.device, args.dtype, args.clip_num_heads)
