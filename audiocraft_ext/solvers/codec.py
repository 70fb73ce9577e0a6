"""AudioCraft's compression (EnCodec) solver, for training the codec of a VidMuse model.

Changes to AudioCraft's:
- checkpoints load with `weights_only=True` (`SafeCheckpointMixin`);
- the codec is built by this project's builder, which adds `encodec.autoencoder: stft` (`STFTEncoder`, `ISTFTDecoder`);
- the generate stage writes its reconstructions in-process (AudioCraft's sample writer runs the ffmpeg program,
  absent on clean machines);
- every loss returns a scalar, so that the linear-frequency multi-resolution STFT loss can be weighted
  (`+losses.mrstft=W`; AudioCraft's `MRSTFTLoss` returns shape `[1]`, which its loss balancer cannot add to its
  total). It runs on the CPU only: AudioCraft's sums its terms into CPU tensors;
- `continue_from` takes a codec training run (`//sig/<xp>`, a `checkpoint.th`) or an exported codec, which
  AudioCraft's reads as hub packages only;
- with `encodec.autoencoder: stft` and `stft.fit_frames: N`, a fresh run (no checkpoint, no `continue_from`) starts
  from the training music: the autoencoder as a whitened PCA codec of N log-magnitude frames (`fit_spectral_basis`)
  and each codebook as AudioCraft's k-means of the residual latents of those frames;
- `best_metric` names the validation metric whose lowest epoch is kept as the best state (what exports and loads);
  AudioCraft keeps the last epoch's, and a codec's figures can swing from one epoch to the next;
- `trainable: decoder` (with `continue_from`) trains the decoder alone: the encoder and the codebooks stay exactly
  as loaded, in the live weights and in the saved best state (`solvers.ema.FrozenPartsEMA`), so that an LM trained
  on the codec's tokens stays valid with the new decoder. The codebooks run in eval mode, at full bandwidth.
"""

from pathlib import Path
import typing as tp

from audiocraft.solvers import builders
from audiocraft.solvers.compression import CompressionSolver
import flashy
import torch
from torch import nn

from ..media.audio import write_wav
from ..models.builders import get_compression_model
from ..models.loaders import load_compression_model
from ..modules.stft_autoencoder import fit_spectral_basis
from .checkpoints import SafeCheckpointMixin
from .ema import keep_parts_exact

TRAINABLE = ("all", "decoder")
KEPT_BY_DECODER_TRAINING = ("encoder", "quantizer")  # the codec's parts that `trainable=decoder` leaves as loaded


class ScalarLoss(nn.Module):
    """`loss(estimate, reference)` as a 0-dimensional tensor."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(estimate, reference).reshape(())


class CodecSolver(SafeCheckpointMixin, CompressionSolver):
    """`CompressionSolver` with the changes above; generate writes
    `<xp>/samples/epoch_<N>/<i>_{reference,codec}.wav`."""

    def __init__(self, cfg):
        if cfg.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, not {cfg.trainable!r}")
        if cfg.trainable == "decoder" and not cfg.continue_from:
            raise ValueError("trainable=decoder keeps the encoder and codebooks of a trained codec: give it "
                             "continue_from=<codec checkpoint>")
        if cfg.losses.get("mrstft", 0) > 0 and not str(cfg.device).startswith("cpu"):
            raise ValueError("losses.mrstft runs on the CPU only (AudioCraft's MRSTFTLoss sums into CPU tensors)")
        super().__init__(cfg)
        for losses in (self.aux_losses, self.info_losses):
            for name in list(losses):
                losses[name] = ScalarLoss(losses[name])

    @property
    def best_metric_name(self) -> tp.Optional[str]:
        return self.cfg.get("best_metric") or None

    def build_model(self):
        # AudioCraft's, with this project's codec builder (`encodec.autoencoder: stft`)
        self.model = get_compression_model(self.cfg).to(self.device)
        self.optimizer = builders.get_optimizer(self.model.parameters(), self.cfg.optim)
        self.register_stateful("model", "optimizer")
        self.register_best_state("model")
        self.register_ema("model")
        if self.cfg.trainable == "decoder":
            for name in KEPT_BY_DECODER_TRAINING:
                getattr(self.model, name).requires_grad_(False)  # no gradient, so the optimizer leaves them
        fresh = not self.cfg.continue_from and not self.checkpoint_path().exists()
        if fresh and self.cfg.encodec.autoencoder == "stft" and self.cfg.stft.get("fit_frames", 0):
            self.fit_to_data(int(self.cfg.stft.fit_frames))

    def fit_to_data(self, num_frames: int) -> None:
        """Start the STFT autoencoder and the codebooks from `num_frames` frames of training batches (before the
        EMA copies the weights): the whitened PCA codec, then, codebook after codebook, AudioCraft's k-means of
        what the previous ones leave of the frames' latents (`rvq.kmeans_iters` iterations)."""
        batches, frames = [], 0
        for batch in self.dataloaders["train"]:
            audio = batch[0] if isinstance(batch, (tuple, list)) else batch
            batches.append(audio)
            frames += audio.shape[0] * (audio.shape[-1] // self.model.encoder.hop_length)
            if frames >= num_frames:
                break
        audio = torch.cat(batches).to(self.device)
        latent = fit_spectral_basis(self.model.encoder, self.model.decoder, audio)  # [B, D, T]
        start = latent.transpose(1, 2).reshape(-1, latent.shape[1])[:num_frames]
        residual = start
        for layer in self.model.quantizer.vq.layers:
            codebook = layer._codebook
            codebook.inited.fill_(False)
            codebook.init_embed_(residual)
            residual = residual - layer.decode(layer.encode(residual.T[None]))[0].T
        flashy.distrib.broadcast_model(self.model)  # every rank starts from rank 0's fit
        self.logger.info("codec started from %d frames of %d training segments: PCA autoencoder, k-means "
                         "codebooks leaving %.3f of the latent's power", len(start), len(audio),
                         residual.pow(2).sum() / start.pow(2).sum().clamp(min=1e-12))

    def initialize_ema(self):
        super().initialize_ema()
        if self.cfg.trainable == "decoder":
            self.ema = keep_parts_exact(self.ema, tuple(f"{name}." for name in KEPT_BY_DECODER_TRAINING))

    def run_step(self, idx: int, batch: torch.Tensor, metrics: dict):
        if self.cfg.trainable == "decoder":  # in training mode the codebooks follow the batches' latents
            for name in KEPT_BY_DECODER_TRAINING:
                getattr(self.model, name).eval()
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
