"""AudioCraft's compression (EnCodec) solver, for training the codec of a VidMuse model.

Two changes: checkpoints load with `weights_only=True` (`SafeCheckpointMixin`), and the generate stage writes its
reconstructions in-process (AudioCraft's sample writer runs the ffmpeg program, absent on clean machines).
"""

from pathlib import Path

from audiocraft.solvers.compression import CompressionSolver
import flashy
import torch

from ..media.audio import write_wav
from .checkpoints import SafeCheckpointMixin


class CodecSolver(SafeCheckpointMixin, CompressionSolver):
    """`CompressionSolver` with safe checkpoints; generate writes `<xp>/samples/epoch_<N>/<i>_{reference,codec}.wav`."""

    def generate(self):
        self.model.eval()
        folder = Path(self.xp.folder) / self.cfg.generate.path / f"epoch_{self.epoch:04d}"
        loader = self.dataloaders["generate"]
        index = flashy.distrib.rank() * len(loader) * loader.batch_size  # distinct names on every worker
        for batch in self.log_progress(str(self.current_stage), loader, total=len(loader), updates=self.log_updates):
            reference = batch[0] if isinstance(batch, (tuple, list)) else batch
            with torch.no_grad():
                estimate = self.model(reference.to(self.device)).x.cpu()
            for ref, est in zip(reference, estimate):
                write_wav(folder / f"{index:04d}_reference.wav", ref, self.cfg.sample_rate)
                write_wav(folder / f"{index:04d}_codec.wav", est, self.cfg.sample_rate)
                index += 1
        self.logger.info("reconstructions in %s", folder)
        flashy.distrib.barrier()
