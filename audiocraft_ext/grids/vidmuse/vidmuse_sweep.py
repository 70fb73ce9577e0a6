"""A VidMuse fine-tuning sweep: learning rate x CFG dropout x visual memory (the release's, or with frame times and
cross-frame attention and motion features), from MusicGen-small.

    dora -P audiocraft_ext grid vidmuse.vidmuse_sweep            # submits to SLURM (partitions: config/teams)
    dora -P audiocraft_ext grid vidmuse.vidmuse_sweep --dry_run --init   # list the XPs without launching
Each XP uses `slurm.gpus` GPUs with torch distributed (DDP), as AudioCraft's grids do. Set the dataset below.
"""

from audiocraft.environment import AudioCraftEnvironment
from audiocraft.grids.musicgen._explorers import LMExplorer

from ...environment import setup_environment

setup_environment()

# A visual memory that knows when each frame is and how patches move (the release's knows neither).
TIME_AWARE_MEMORY = {"video.visual.frame_time_embedding": True, "video.visual.frame_time_rate": 50,
                     "video.visual.cross_frame_depth": 2, "video.visual.motion_features": True}


@LMExplorer
def explorer(launcher):
    partitions = AudioCraftEnvironment.get_slurm_partitions(["team", "global"])
    launcher.slurm_(gpus=8, partition=partitions)
    launcher.bind_(solver="vidmuse/vidmuse_finetune", dset="example",
                   continue_from="//pretrained/facebook/musicgen-small")
    for lr in (35e-6, 1e-4):
        for dropout in (0.1, 0.3):
            for memory in ({}, TIME_AWARE_MEMORY):
                launcher({"optim.lr": lr, "classifier_free_guidance.training_dropout": dropout, **memory})
