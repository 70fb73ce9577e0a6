"""A tiny CPU grid over the debug solver (two learning rates), to try Dora's grid workflow on one machine.

    dora -P audiocraft_ext grid vidmuse.vidmuse_debug --dry_run --init
"""

from audiocraft.grids.musicgen._explorers import LMExplorer

from ...environment import setup_environment

setup_environment()


@LMExplorer
def explorer(launcher):
    launcher.slurm_(gpus=0)
    launcher.bind_(solver="vidmuse/debug", dset="example")
    for lr in (1e-3, 3e-3):
        launcher({"optim.lr": lr})
