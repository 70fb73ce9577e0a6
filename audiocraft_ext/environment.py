"""Where the project's Hydra configs live, and AudioCraft's environment pointed at them.

AudioCraft's PyPI package ships no `config/` folder; this project ships its own. AudioCraft's
`AudioCraftEnvironment` (Dora folder, reference folder, SLURM partitions) reads the team file named by the
`AUDIOCRAFT_CONFIG` variable, which `setup_environment` sets to `config/teams/default.yaml` unless already set.
"""

import os
from pathlib import Path
import typing as tp

CONFIG_DIR = Path(os.environ.get("AUDIOCRAFT_EXT_CONFIG_DIR", Path(__file__).resolve().parents[1] / "config"))


def setup_environment() -> None:
    """Point AudioCraft's environment at this project's team config (unless the user chose another)."""
    os.environ.setdefault("AUDIOCRAFT_CONFIG", str(CONFIG_DIR / "teams" / "default.yaml"))


def xp_checkpoint(sig: str, dora_dir: tp.Optional[Path] = None) -> Path:
    """The last checkpoint of the Dora experiment `sig`: `xps/<sig>/checkpoint.th` under `dora_dir`, by default
    AudioCraft's Dora folder (`$AUDIOCRAFT_DORA_DIR`, else the team config's `dora_dir`, from the current folder)."""
    if dora_dir is None:
        setup_environment()
        from audiocraft.environment import AudioCraftEnvironment  # reads AUDIOCRAFT_CONFIG, set just above
        dora_dir = AudioCraftEnvironment.get_dora_dir()
    return Path(dora_dir) / "xps" / sig / "checkpoint.th"
