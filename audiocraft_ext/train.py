# Derived from AudioCraft's audiocraft/train.py (Copyright (c) Meta Platforms, Inc. and affiliates, MIT): see NOTICE.
"""Training entry point for Dora (`dora run solver=vidmuse/debug dset=<name>`; `train.sh` wraps it).

AudioCraft's own `audiocraft.train` cannot be imported from its PyPI package (its Hydra config folder is not
shipped), so this module plays its part with the project's `config/` tree: it sets the process up, builds the
solver named in the config (VidMuse here, any AudioCraft solver otherwise) and runs it.
"""

import logging
import multiprocessing
import os
import random
import typing as tp

from dora import git_save, hydra_main
import flashy
import omegaconf
import torch

from .environment import setup_environment, xp_checkpoint
from .utils.devices import auto_device

setup_environment()
from audiocraft.environment import AudioCraftEnvironment  # noqa: E402  (reads AUDIOCRAFT_CONFIG)

logger = logging.getLogger(__name__)


def resolve_device(cfg: omegaconf.DictConfig) -> None:
    cfg.device = auto_device(cfg.device)
    if cfg.device == "cpu" and cfg.autocast:
        logger.info("autocast is for GPUs: disabled on CPU")
        cfg.autocast = False


PRETRAINED_PREFIX = "//pretrained/"
SIG_PREFIX = "//sig/"


def resolve_checkpoint_reference(value: tp.Optional[str], continue_from: bool = False) -> tp.Optional[str]:
    """A checkpoint reference (`continue_from`, `compression_model_checkpoint`) made independent of the folder
    the solver runs in (its XP folder): a path, with or without `//pretrained/`, relative to the folder training
    was launched from becomes absolute. `//sig/SIG` becomes `//pretrained/<this project's XP folder of SIG>`:
    AudioCraft resolves `//sig/` and plain paths by importing its own Dora main, which cannot load inside this
    one; the VidMuse solver loads the XP's best state itself, and for the same reason a local `continue_from`
    path gets the `//pretrained/` prefix. Hub names and paths that do not exist there are returned unchanged."""
    if isinstance(value, str) and value.startswith(SIG_PREFIX):
        # the Dora folder as Dora resolved it at launch: the solver runs inside its XP folder
        return PRETRAINED_PREFIX + str(xp_checkpoint(value[len(SIG_PREFIX):], main.dora.dir))
    if not isinstance(value, str) or (value.startswith("//") and not value.startswith(PRETRAINED_PREFIX)):
        return value
    prefix = PRETRAINED_PREFIX if value.startswith(PRETRAINED_PREFIX) or continue_from else ""
    path = value[len(PRETRAINED_PREFIX):] if value.startswith(PRETRAINED_PREFIX) else value
    absolute = path if os.path.isabs(path) else str(git_save.to_absolute_path(path))
    if not os.path.exists(absolute):
        return value
    return prefix + absolute


def get_solver(cfg: omegaconf.DictConfig):
    """Build the solver for `cfg` (the batch size is split over the distributed workers, as AudioCraft does)."""
    from . import solvers
    resolve_device(cfg)
    world = flashy.distrib.world_size()
    assert cfg.dataset.batch_size % world == 0, "batch_size must be divisible by the number of workers"
    cfg.dataset.batch_size //= world
    for key, value in cfg.datasource.items():  # manifests are found from a git_save clone too
        if isinstance(value, str) and key not in ("max_sample_rate", "max_channels"):
            cfg.datasource[key] = git_save.to_absolute_path(value)
    for key in ("continue_from", "compression_model_checkpoint"):
        if key in cfg:  # the codec solver has no compression_model_checkpoint
            cfg[key] = resolve_checkpoint_reference(cfg[key], continue_from=key == "continue_from")
    return solvers.get_solver(cfg)


def shared_cpu_threads() -> tp.Optional[int]:
    """With several processes on this machine (Dora's `-d`, SLURM tasks; torchrun through `train.sh` sets
    OMP_NUM_THREADS itself), each one's share of the cores; None for a single process (torch's default, all
    cores). Each process taking every core slowed a 2-process CPU run here about 250-fold."""
    from dora.distrib import get_distrib_spec
    spec = get_distrib_spec()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", spec.world_size // spec.num_nodes))
    if local_processes <= 1:
        return None
    return max(1, len(os.sched_getaffinity(0)) // local_processes)


def init_seed_and_system(cfg: omegaconf.DictConfig) -> None:
    import numpy as np
    from audiocraft.modules.transformer import set_efficient_attention_backend

    multiprocessing.set_start_method(cfg.mp_start_method, force=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if not cfg.num_threads and "OMP_NUM_THREADS" not in os.environ:
        cfg.num_threads = shared_cpu_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
        os.environ["MKL_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(cfg.num_threads)
    set_efficient_attention_backend(cfg.efficient_attention_backend)


def init_distributed(cfg: omegaconf.DictConfig) -> None:
    """Join the process group when launched with several processes (torchrun, `dora run -d`, SLURM through
    Dora's grids; all set RANK / WORLD_SIZE or submitit's variables): NCCL when the processes train on GPUs,
    gloo otherwise (flashy's `init` asks for NCCL, which CPUs lack). Logs the world size and this rank."""
    from dora.distrib import get_distrib_spec
    on_gpu = torch.cuda.is_available() and cfg.device != "cpu"
    backend = "nccl" if on_gpu else "gloo"
    flashy.distrib.init(backend=backend)
    logger.info("distributed: world size %d, rank %d (local rank %d)%s", flashy.distrib.world_size(),
                flashy.distrib.rank(), get_distrib_spec().local_rank,
                f", backend {backend}" if flashy.distrib.is_distributed() else "")


@hydra_main(config_path="../config", config_name="config", version_base="1.1")
def main(cfg):
    init_seed_and_system(cfg)
    log_name = f"{cfg.execute_only}.log.{{rank}}" if cfg.execute_only else "solver.log.{rank}"
    flashy.setup_logging(level=str(cfg.logging.level).upper(), log_name=log_name)
    init_distributed(cfg)
    solver = get_solver(cfg)
    if cfg.show:
        solver.show()
        return
    if cfg.execute_only:
        assert cfg.execute_inplace or cfg.continue_from is not None, \
            "execute_only needs continue_from=<sig or path>, or execute_inplace=true"
        solver.restore(replay_metrics=False)
        solver.run_one_stage(cfg.execute_only)
        return
    return solver.run()


main.dora.dir = AudioCraftEnvironment.get_dora_dir()
