"""AudioCraft's compression (EnCodec) solver, for training the codec of a VidMuse model.

Five changes: checkpoints load with `weights_only=True` (`SafeCheckpointMixin`); the generate stage writes its
reconstructions in-process (AudioCraft's sample writer runs the ffmpeg program, absent on clean machines); every
loss returns a scalar, so that the linear-frequency `mrstft` loss can be weighted (`losses.mrstft`; AudioCraft's
`MRSTFTLoss` returns shape `[1]`, which its loss balancer cannot add to its total); and `continue_from` takes a
codec training run (`//sig/<xp>`, a `checkpoint.th`) or an exported codec, which AudioCraft's reads as hub
packages only; `trainable: decoder` trains the decoder alone, the encoder and codebooks staying as loaded, so that
an LM trained on the codec's tokens stays valid with the new decoder.
"""

from pathlib import Path

from audiocraft.solvers.compression import CompressionSolver
import flashy
import torch
from torch import nn

from ..media.audio import write_wav
from ..models.loaders import load_compression_model
from .checkpoints import SafeCheckpointMixin


class ScalarLoss(nn.Module):
    """`loss(estimate, reference)` as a 0-dimensional tensor."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(estimate, reference).reshape(())


class CodecSolver(SafeCheckpointMixin, CompressionSolver):
    """`CompressionSolver` with safe checkpoints and scalar losses; generate writes
    `<xp>/samples/epoch_<N>/<i>_{reference,codec}.wav`."""

    def __init__(self, cfg):
        super().__init__(cfg)
        for losses in (self.aux_losses, self.info_losses):
            for name in list(losses):
                losses[name] = ScalarLoss(losses[name])
        if self.cfg.trainable not in ("all", "decoder"):
            raise ValueError(f"trainable must be 'all' or 'decoder', not {self.cfg.trainable!r}")

    def build_model(self):
        super().build_model()
        if self.cfg.trainable == "decoder":  # frozen weights get no gradient, so the optimizer leaves them
            for module in (self.model.encoder, self.model.quantizer):
                module.requires_grad_(False)

    def run_step(self, idx: int, batch: torch.Tensor, metrics: dict):
        if self.cfg.trainable == "decoder":  # in training mode the codebooks follow the batches' latents
            self.model.encoder.eval()
            self.model.quantizer.eval()
        return super().run_step(idx, batch, metrics)

    def load_from_pretrained(self, name: str) -> dict:
        """The starting weights for `continue_from`: a local codec (training checkpoint, checkpoint folder or
        `compression_state_dict.bin`) through this project's loader, a hub name through AudioCraft's."""
        if not Path(name).exists():
            return super().load_from_pretrained(name)
        return {"best_state": {"model": load_compression_model(name).state_dict()}}

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
