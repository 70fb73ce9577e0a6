"""Training VidMuse: AudioCraft's `MusicGenSolver` with a video condition.

What changes from MusicGen's solver:
- batches are `(wav, local frames or tokens, global frames or tokens, infos)` from `VideoAudioDataset`;
- the condition is the video memory; classifier-free guidance dropout replaces an item's video by the null
  video (black frames, as at inference) with probability `classifier_free_guidance.training_dropout` (the
  release configured 0.3 but never applied it);
- the CLIP tower can start from pretrained weights (`video.clip_pretrained`) and its tokens can be cached on disk
  (`video.feature_cache`), so that epochs skip video decoding and CLIP;
- `continue_from` accepts an exported VidMuse checkpoint (official or ours) or an AudioCraft MusicGen checkpoint
  (`//pretrained/facebook/musicgen-small`): the new visual parameters keep the release's initialisation
  (the fusion output starts at zero);
- the generate stage writes music for the videos of the generate set;
- optionally (`contrastive.weight > 0`), a likelihood-ratio loss: each item's music is scored again given another
  item's video (its variant's, with `dataset.pair_variants`: `contrast_partners`), and the model learns to prefer
  its own (`video_contrast_loss`). The `ce` and `ppl` metrics of
  every stage then include it (`ce` = mean of `ce_q*` + weight x contrast), so that the best state is chosen by
  the objective being trained; `ce_q*` stay the plain cross-entropies. It needs at least two items per batch
  (per GPU).
- for a model built with `video.visual.music_descriptors`, the music's descriptors (onset rate, register, read
  off each item's audio): before the first epoch, the head that predicts them from a whole video is fitted in
  closed form on the training clips (`fit_descriptor_head`; each clip's whole video and whole music), and the LM
  is conditioned on each segment's own values (teacher forcing; in training with a little noise,
  `music_descriptors.teacher_noise`), on the null video's predicted ones for the items CFG dropout nulled (the
  generate stage's samples too are conditioned on their music's own: cached tokens carry no pixels);
- optionally (`history_noise.probability > 0`), training inputs whose music before a random step is random
  codes (`noise_music_history`), so that the LM learns tempo and register from the video where its past is no
  guide; the loss stays on the clean codes.
- the valid and evaluate stages also report `video_gain`, how much the LM reads the video (nats per token of
  its music given its own video, and text if any, over the null condition).
- the EMA keeps the frozen CLIP tower and the fitted descriptor head exact (`solvers.ema.FrozenPartsEMA`);
- a run with `optim.epochs=0` trains nothing: it restores (with `continue_from`, fitting the descriptor head
  anew where it needs a fit) and saves its checkpoint, e.g. to refit a trained model's read-out after a change
  of what it reads, without training the LM again.
Everything else (optimisation, EMA otherwise, autocast, checkpoints and resume, logging) is AudioCraft's.
"""

import math
from pathlib import Path
import time
import typing as tp

from audiocraft import models as audiocraft_models
from audiocraft.data.audio import audio_read
from audiocraft.data.audio_utils import convert_audio
from audiocraft.solvers import builders
from audiocraft.solvers.musicgen import MusicGenSolver
from audiocraft.utils.utils import dict_from_config, get_dataset_from_loader, model_hash
import flashy
import torch
from tqdm import tqdm

from ..data.feature_cache import FeatureCache
from ..data.video_dataset import VideoAudioDataset, load_video_audio_meta
from ..media.audio import normalize_music, write_wav
from ..media.mux import mux_music
from ..models.builders import get_vidmuse_lm, get_visual_config
from ..models.lm import VideoBatch, VidMuseLM, mean_token_log_likelihood
from ..models.loaders import (ModelFilesMissing, find_lm_file, is_official_state_dict,
                              load_compression_model_from_cfg, load_package, map_official_state_dict)
from ..modules.cross_attention import cross_attention_modules
from ..modules.music_descriptors import music_descriptors
from ..modules.visual import descriptor_statistics
from ..utils.checkpoint import best_model_state
from ..utils.checksum import module_fingerprint
from ..utils.shards import shard
from .checkpoints import SafeCheckpointMixin
from .ema import keep_parts_exact

Batch = tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor, tp.List[tp.Any]]


def cfg_dropout_video(local: torch.Tensor, glob: torch.Tensor, p: float, null_local: torch.Tensor,
                      null_glob: torch.Tensor, generator: tp.Optional[torch.Generator] = None
                      ) -> tp.Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classifier-free guidance dropout on a batch: each item's local and global visuals (frames or tokens,
    batch first) are replaced by the null video with probability `p`, independently per item. Returns the new
    visuals and the bool `[B]` mask of dropped items (their text is dropped too)."""
    if p <= 0:  # no random draw: stages without dropout leave the random stream as it was
        return local, glob, torch.zeros(local.shape[0], dtype=torch.bool, device=local.device)
    drop = torch.rand(local.shape[0], generator=generator, device=local.device) < p
    shape = (-1,) + (1,) * (local.dim() - 1)
    return (torch.where(drop.view(shape), null_local, local),
            torch.where(drop.view(shape), null_glob, glob), drop)


def null_videos_keeping_descriptors(video: VideoBatch, p: float, null_local: torch.Tensor, null_glob: torch.Tensor,
                                    generator: tp.Optional[torch.Generator] = None) -> torch.Tensor:
    """Video dropout for a model built with music descriptors (`music_descriptors.video_dropout`): each item's local
    and global visuals are replaced in `video` by the null video with probability `p` (`cfg_dropout_video`), its
    descriptors and text kept, so the LM learns to set tempo and register from the descriptors alone. Returns the
    bool `[B]` mask of the nulled items."""
    video.local_frames, video.global_frames, nulled = cfg_dropout_video(
        video.local_frames, video.global_frames, p, null_local, null_glob, generator)
    return nulled


def noise_music_history(tokens: torch.Tensor, mask: torch.Tensor, probability: float, card: int,
                        generator: tp.Optional[torch.Generator] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Training inputs whose past does not always tell the music: for each item with probability `probability`,
    the codes before a step drawn uniformly in `[0, T)` are replaced by random codes. The LM then has to take
    tempo and register from the video at many more steps than at a segment's start.

    Args:
        tokens: `[B, K, T]` codec codes (the targets stay these); mask: bool `[B, K, T]` targets in the loss.
        probability: share of the items whose history is noised (0: none, and no random draw).
        card: codebook size (random codes are drawn in `[0, card)`).
    Returns:
        the input codes `[B, K, T]` and the loss mask `[B, K, T]`: at noised steps only the first codebook is
        kept, since the delay pattern predicts the finer codebooks of a step from its (noised) first codebook.
    """
    if probability <= 0:
        return tokens, mask
    batch, codebooks, steps = tokens.shape
    noised = torch.rand(batch, generator=generator, device=tokens.device) < probability
    start = (torch.rand(batch, generator=generator, device=tokens.device) * steps).long()
    before = noised[:, None] & (torch.arange(steps, device=tokens.device)[None] < start[:, None])  # [B, T]
    random = torch.randint(0, card, tokens.shape, generator=generator, device=tokens.device)
    inputs = torch.where(before[:, None], random, tokens)
    finer = torch.arange(codebooks, device=tokens.device)[None, :, None] > 0
    return inputs, mask & ~(before[:, None] & finer)


def video_contrast_loss(own: torch.Tensor, other: torch.Tensor, items: torch.Tensor, temperature: float
                        ) -> torch.Tensor:
    """Likelihood-ratio loss of a batch whose music was scored given its own videos and given other ones: for
    item i's music, its own video against its partner's (`contrast_partners`).

    Args:
        own: `[B]` mean log-likelihood per token of item i's music given its own video.
        other: `[B]` the same given its partner's video.
        items: bool `[B]`: the items that take part (see `VidMuseSolver._with_other_videos`).
        temperature: nats per token; the gap `own - other` enters as `softplus(-gap / temperature)`, the loss of a
            two-way classifier that tells the true video by the likelihood it gives the music.
    Returns:
        the mean loss over the taking-part items (zero if there are none).
    """
    losses = torch.nn.functional.softplus(-(own - other) / temperature)
    return (losses * items.float()).sum() / items.float().sum().clamp(min=1)


def contrast_partners(groups: tp.Sequence[tp.Optional[str]]) -> torch.Tensor:
    """Whose video each item's music is scored against in the contrastive loss: `[B]` item indices.

    A batch of variant pairs (`VideoAudioDataset`'s `pair_variants`: items 2j and 2j + 1 share a manifest group)
    swaps within each pair, so the loss can only be lowered by what tells the variants apart; any other batch
    takes the previous item (the batch rolled by one).
    """
    size = len(groups)
    index = torch.arange(size)
    paired = size % 2 == 0 and all(groups[i] is not None and groups[i] == groups[i + 1] for i in range(0, size, 2))
    return index ^ 1 if paired else index.roll(1)


def load_pretrained_clip(lm: VidMuseLM, name: str) -> None:
    """Copy the weights of a transformers CLIP vision model (e.g. `openai/clip-vit-base-patch32`) into the LM."""
    from transformers import CLIPVisionModelWithProjection
    try:
        pretrained = CLIPVisionModelWithProjection.from_pretrained(name)
    except OSError as err:
        raise ModelFilesMissing(
            f"CLIP weights '{name}' not found locally and the Hugging Face hub is unreachable "
            f"({err.__class__.__name__}). "
            f"Download them (`huggingface-cli download {name}`), or set video.clip_pretrained=null to start from "
            "random CLIP weights, or continue_from a VidMuse checkpoint (it holds CLIP).") from None
    lm.video_encoder.visual_encoder_model.load_state_dict(pretrained.state_dict())


def zero_init_cross_attention(lm: VidMuseLM) -> None:
    """Zero the output projection of every cross-attention of the LM, so that a fresh LM starts by ignoring the
    video exactly (as Flamingo's gates and ControlNet's zero convolutions): a random video memory would otherwise
    add noise to the LM's predictions, and the cheapest way for training to remove that noise is to flatten the
    visual memory, after which the LM never learns to read it."""
    with torch.no_grad():
        for module in cross_attention_modules(lm.transformer):
            module.out_proj.weight.zero_()
            if module.out_proj.bias is not None:
                module.out_proj.bias.zero_()


class VidMuseSolver(SafeCheckpointMixin, MusicGenSolver):
    """Solver for VidMuse training (see the module docstring)."""

    def build_model(self) -> None:
        """Codec, VidMuse LM (with pretrained CLIP if configured), EMA, optimizer, scheduler, autocast."""
        self.compression_model = load_compression_model_from_cfg(self.cfg, self.device)
        lm_cfg = self.cfg.transformer_lm
        codec = self.compression_model
        if (lm_cfg.card, lm_cfg.n_q) != (codec.cardinality, codec.num_codebooks):
            raise ValueError(f"LM card/n_q {lm_cfg.card}/{lm_cfg.n_q} do not match the codec's "
                             f"{codec.cardinality}/{codec.num_codebooks}")
        self.model: VidMuseLM = get_vidmuse_lm(self.cfg).to(self.device)  # type: ignore[assignment]
        if self.cfg.video.clip_pretrained:
            load_pretrained_clip(self.model, self.cfg.video.clip_pretrained)
        if self.cfg.video.get("zero_init_cross_attention"):
            zero_init_cross_attention(self.model)
        if self.cfg.fsdp.use:
            raise ValueError("FSDP is not supported for VidMuse training; use DDP (dora run -d)")
        self.register_ema("model")
        groups = builders.get_optim_parameter_groups(self.model)  # honours emb_lr; frozen CLIP gets no grads
        self.optimizer = builders.get_optimizer(groups, self.cfg.optim)
        self.lr_scheduler = builders.get_lr_scheduler(self.optimizer, self.cfg.schedule, self.total_updates)
        self.register_stateful("model", "optimizer", "lr_scheduler")
        self.register_best_state("model")
        self.autocast_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[self.cfg.autocast_dtype]
        self.scaler: tp.Optional[torch.cuda.amp.GradScaler] = None
        if self.cfg.autocast and self.autocast_dtype is torch.float16 and self.device != "cpu":
            self.scaler = torch.amp.GradScaler("cuda")
            self.register_stateful("scaler")
        self._null_tokens: tp.Optional[torch.Tensor] = None
        self._null_values: tp.Optional[torch.Tensor] = None
        self._contrast_items: tp.Optional[torch.Tensor] = None  # items of a step's contrastive loss, if any
        self._targets: tp.Optional[torch.Tensor] = None  # a step's clean codes when its inputs were noised

    def initialize_ema(self):
        """AudioCraft's EMA, keeping the frozen CLIP tower and the fitted descriptor head exact: averaged, the
        tower's weights changed in their last bits at every stage, and with them the fingerprint that keys the
        feature cache."""
        super().initialize_ema()
        frozen = ("video_encoder.visual_encoder_model.", "video_encoder.descriptor_head.",
                  "video_encoder.descriptor_fit_clips")
        self.ema = keep_parts_exact(self.ema, frozen)

    # ------------------------------------------------------------------ data
    def build_dataloaders(self) -> None:
        """One `VideoAudioDataset` loader per split (train, valid, evaluate, generate)."""
        if not self.cfg.datasource.get("train"):
            raise ValueError("no training data: pass dset=<name> or datasource.train=<folder with data.jsonl>")
        visual = get_visual_config(self.cfg)
        assert visual is not None
        self.dataloaders = {}
        for split in ("train", "valid", "evaluate", "generate"):
            path = self.cfg.datasource.get(split)
            if not path:
                continue
            kwargs = dict_from_config(self.cfg.dataset)
            split_kwargs = kwargs.pop(split, None) or {}
            for other in ("train", "valid", "evaluate", "generate"):
                kwargs.pop(other, None)
            kwargs.update(split_kwargs)
            batch_size = kwargs.pop("batch_size")
            num_workers = kwargs.pop("num_workers")
            for unused in ("return_info", "permutation_on_files"):
                kwargs.pop(unused, None)
            kwargs.setdefault("shuffle", split == "train")
            dataset = VideoAudioDataset(
                load_video_audio_meta(path), local_fps=visual.local_fps,
                num_global_frames=int(self.cfg.video.train_global_frames), frame_size=visual.clip["image_size"],
                resize_mode=self.cfg.video.resize_mode, seek_mode=self.cfg.video.segment_seek,
                sample_rate=self.cfg.sample_rate, channels=self.cfg.channels, **kwargs)
            self.dataloaders[split] = flashy.distrib.loader(
                dataset, batch_size=batch_size, num_workers=num_workers, shuffle=split == "train",
                collate_fn=dataset.collater, drop_last=split == "train")

    def run(self) -> None:
        """AudioCraft's training loop; with `optim.epochs=0`, only `restore` and a checkpoint of the result (the
        best state updated to it)."""
        if int(self.cfg.optim.epochs) > 0:
            return super().run()
        self.restore(replay_metrics=True)
        for name in self.best_state.states:
            self.best_state.update(name, self._get_state_source(name))
        self.save_checkpoints()

    def restore(self, *args, **kwargs) -> bool:
        """AudioCraft's restore, then the feature cache (which needs the final CLIP weights) if configured, then
        the descriptor head's fit if the model has an unfitted one, or at the start of a run with
        `music_descriptors.refit` (a head loaded by `continue_from` fitted to other descriptors)."""
        restored = super().restore(*args, **kwargs)
        self._attach_feature_cache()
        encoder = self.model.video_encoder
        refit = bool(self.cfg.music_descriptors.refit) and not self.history  # not again when the run resumes
        if encoder.descriptor_head is not None and (refit or not encoder.descriptor_head_fitted):
            self._fit_descriptor_head()
        return restored

    @torch.no_grad()
    def _fit_descriptor_head(self) -> None:
        """Fit the descriptor head (`VideoEncoder.fit_descriptor_head`) on up to `music_descriptors.fit_clips`
        training clips: the `descriptor_statistics` of each clip's whole video (local frames at the local rate; the
        pixels decoded anew, the tokens from the feature cache if any) and the `music_descriptors` of its whole
        music (with the manifest's `domain` of every clip, each cross-validation fold holds out one domain). Every
        rank fits the same clips, so the weights stay identical."""
        cfg = self.cfg.music_descriptors
        dataset = get_dataset_from_loader(self.dataloaders["train"])
        metas = dataset.meta[:int(cfg.fit_clips)]
        encoder = self.model.video_encoder
        statistics, descriptors = [], []
        for meta in tqdm(metas, desc="fitting the descriptor head", unit="clip",
                         disable=not flashy.distrib.is_rank_zero()):
            decoded = dataset.whole_frames(meta)  # the pixels; without a feature cache, the tokens' frames too
            visuals = dataset.whole_video(meta) if dataset.feature_cache is not None \
                else (decoded.local_frames, decoded.global_frames)
            local, glob = (visual.to(self.device)[None] for visual in visuals)
            statistics.append(descriptor_statistics(encoder.tokens(glob), encoder.tokens(local),
                                                    decoded.local_frames[None]))
            wav, sr = audio_read(meta.path)
            wav = convert_audio(wav, sr, self.cfg.sample_rate, self.cfg.channels)
            descriptors.append(music_descriptors(wav[None].to(self.device), self.cfg.sample_rate))
        domains = [meta.domain for meta in metas]
        fit = encoder.fit_descriptor_head(torch.cat(statistics), torch.cat(descriptors),
                                          tuple(cfg.fit_ridges), int(cfg.fit_folds), float(cfg.fit_max_spread_factor),
                                          None if None in domains else domains,
                                          {name: list(inputs) for name, inputs in cfg.fit_inputs.items()})
        self.logger.info("descriptor head fitted on %d clips (%d folds): held-out correlation %s, inputs %s, "
                         "ridge %s, spread factor %s", fit.clips, fit.folds, [round(c, 2) for c in fit.correlation],
                         fit.inputs, fit.ridge, [round(f, 2) for f in fit.spread_factor])
        if self.ema is not None:  # the averaged weights hold the fitted head from the start
            self.ema.copy_frozen()

    def _attach_feature_cache(self) -> None:
        """Compute missing CLIP features of every dataset's videos and make the datasets return them. With
        several processes, each computes its round-robin share of the sorted videos (no video twice, each file
        written atomically) and all wait for the others before training."""
        folder = self.cfg.video.get("feature_cache")
        if not folder:
            return
        visual = self.model.visual_config
        encoder = self.model.video_encoder
        cache = FeatureCache(folder, module_fingerprint(encoder.visual_encoder_model), visual.local_fps,
                             int(self.cfg.video.train_global_frames), visual.clip["image_size"],
                             self.cfg.video.resize_mode)
        datasets = [get_dataset_from_loader(loader) for loader in self.dataloaders.values()]  # not the Subset
        videos = sorted({m.video_path for dataset in datasets for m in dataset.meta})
        share = shard(videos, flashy.distrib.world_size(), flashy.distrib.rank())
        computed = cache.build(share, encoder.clip_tokens)
        self.logger.info("feature cache %s: rank %d computed CLIP tokens of %d of its %d videos (%d in all)",
                         folder, flashy.distrib.rank(), computed, len(share), len(videos))
        flashy.distrib.barrier()
        for dataset in datasets:
            dataset.feature_cache = cache

    def run_epoch(self) -> None:
        """AudioCraft's epoch, then (with several processes) a check that every rank holds the same weights:
        a replica that drifted (a skipped update, a non-deterministic reduction) would otherwise train on
        unnoticed until the checkpoint, which only rank 0 writes."""
        super().run_epoch()
        if flashy.distrib.is_distributed():
            digest = model_hash(self.model)
            digests = [None] * flashy.distrib.world_size()
            torch.distributed.all_gather_object(digests, digest)
            if len(set(digests)) > 1:
                raise RuntimeError(f"model weights differ across ranks after epoch {self.epoch}: {digests}")
            self.logger.info("model weights identical on all %d ranks (hash %s)", len(digests), digest)

    # --------------------------------------------------------- conditioning
    def _null_visual(self, like: torch.Tensor) -> torch.Tensor:
        """The null video in the batch's representation: black frames, or the CLIP tokens of a black frame."""
        if like.dtype == torch.uint8:
            return torch.zeros_like(like)
        if self._null_tokens is None:
            size = self.model.visual_config.clip["image_size"]
            black = torch.zeros(1, 3, size, size, dtype=torch.uint8, device=self.device)
            self._null_tokens = self.model.video_encoder.clip_tokens(black)[0].float()
        return self._null_tokens.to(like).expand_as(like[0])[None].expand_as(like)

    def _null_descriptors(self) -> torch.Tensor:
        """`VideoEncoder.null_descriptors` `[N]`, computed once (the head is fitted before the first step)."""
        if self._null_values is None:
            self._null_values = self.model.video_encoder.null_descriptors().float()
        return self._null_values

    def _video_batch(self, batch: Batch, dropout: bool) -> tp.Tuple[VideoBatch, torch.Tensor]:
        """The condition of a batch and the bool `[B]` mask of its items whose video was nulled (in training,
        CFG dropout nulls the video and the text of some items; otherwise none is). A model built with music
        descriptors is conditioned on the music's own (`_teacher_descriptors`), in every stage: the feature
        cache's tokens carry no pixels to predict them from; in training, `music_descriptors.video_dropout` also
        nulls the video of some items that keep their descriptors and text."""
        _, local, glob, infos = batch
        local, glob = local.to(self.device), glob.to(self.device)
        texts = [getattr(info, "description", None) for info in infos] if self.model.has_text_conditioner else None
        drop = torch.zeros(local.shape[0], dtype=torch.bool, device=self.device)
        if dropout:
            null_local, null_glob = self._null_visual(local), self._null_visual(glob)
            p = float(self.cfg.classifier_free_guidance.training_dropout)
            local, glob, drop = cfg_dropout_video(local, glob, p, null_local, null_glob)
            if texts is not None:
                texts = [None if dropped else text for text, dropped in zip(texts, drop.tolist())]
        video = VideoBatch(local, glob, descriptions=texts)
        if self.model.visual_config.music_descriptors:
            video.music_descriptors = self._teacher_descriptors(self._music_descriptors(batch), drop)
            if dropout:
                drop = drop | null_videos_keeping_descriptors(video, float(self.cfg.music_descriptors.video_dropout),
                                                              null_local, null_glob)
        return video, drop

    def _with_other_videos(self, batch: Batch, video: VideoBatch, drop: torch.Tensor) -> VideoBatch:
        """For the contrastive loss: the batch's videos followed by each item's partner's video
        (`contrast_partners`; never nulled; each item keeps its own text). Sets `_contrast_items`, the items that
        take part: not those whose own video was nulled, nor those whose partner is a segment of the same video."""
        _, local, glob, infos = batch
        partners = contrast_partners([info.meta.group for info in infos])
        descriptors = video.music_descriptors  # each partner's video keeps its own music's descriptors
        other = VideoBatch(local.to(self.device)[partners], glob.to(self.device)[partners],
                           descriptions=video.descriptions,
                           music_descriptors=None if descriptors is None else descriptors[partners.to(self.device)])
        paths = [info.meta.video_path for info in infos]
        same = torch.tensor([path == paths[j] for path, j in zip(paths, partners.tolist())], device=drop.device)
        self._contrast_items = ~drop & ~same
        return VideoBatch.cat([video, other])

    def _compute_cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                               ) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
        """AudioCraft's cross-entropy on the batch's own items (against the clean codes when the step's inputs were
        noised, see `noise_music_history`), plus the weighted `video_contrast_loss` when the step prepared
        other-video items (`_with_other_videos`)."""
        targets = targets if self._targets is None else self._targets
        items = self._contrast_items
        if items is None:
            ce, ce_per_codebook = super()._compute_cross_entropy(logits, targets, mask)
        else:
            size = items.shape[0]
            assert logits.shape[0] == 2 * size, "contrastive items do not match the batch"
            ce, ce_per_codebook = super()._compute_cross_entropy(logits[:size], targets[:size], mask[:size])
            own, other = mean_token_log_likelihood(logits, targets, mask).chunk(2)
            contrast = video_contrast_loss(own, other, items, float(self.cfg.contrastive.temperature))
            ce = ce + float(self.cfg.contrastive.weight) * contrast
        return ce, ce_per_codebook

    @torch.no_grad()
    def _audio_tokens(self, batch: Batch) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """Codec tokens `[B, K, T]` of the batch's audio and the bool padding mask `[B, K, T]` (False past each
        item's end, where the tokens are the special token if `tokens.padding_with_special_token`)."""
        audio_tokens, scale = self.compression_model.encode(batch[0].to(self.device))
        assert scale is None, "the LM needs a codec without scale"
        padding_mask = torch.ones_like(audio_tokens, dtype=torch.bool)
        if self.cfg.tokens.padding_with_special_token:  # tokens of the zero padding past the audio's end
            audio_tokens = audio_tokens.clone()
            for i, info in enumerate(batch[3]):
                valid = math.floor(info.n_frames / info.sample_rate * self.compression_model.frame_rate)
                audio_tokens[i, :, valid:] = self.model.special_token_id
                padding_mask[i, :, valid:] = False
        return audio_tokens, padding_mask

    def _prepare_tokens_and_attributes(self, batch: Batch, check_synchronization_points: bool = False
                                       ) -> tp.Tuple[dict, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Video condition tensors (with CFG dropout when training, and for a model built with music descriptors
        conditioned on the music's own: `_teacher_descriptors`), the LM's input codes `[B, K, T]`
        (with `noise_music_history` when training; the clean codes then go to `_targets`), loss mask (with the
        contrastive loss: `2B` items, see `_with_other_videos`)."""
        targets, padding_mask = self._audio_tokens(batch)
        video, drop = self._video_batch(batch, dropout=self.model.training)
        self._contrast_items = None  # set anew by every step: nothing carries over from one that failed
        noise = float(self.cfg.history_noise.probability) if self.model.training else 0.0
        audio_tokens, padding_mask = noise_music_history(targets, padding_mask, noise, self.model.card)
        if self.cfg.contrastive.weight > 0 and len(video) > 1:
            video = self._with_other_videos(batch, video, drop)
            audio_tokens, padding_mask = audio_tokens.repeat(2, 1, 1), padding_mask.repeat(2, 1, 1)
            targets = targets.repeat(2, 1, 1)
        self._targets = targets if noise > 0 else None
        with self.autocast:
            condition_tensors = self.model.compute_video_condition(video)
        return condition_tensors, audio_tokens, padding_mask

    @torch.no_grad()
    def _music_descriptors(self, batch: Batch) -> torch.Tensor:
        """`music_descriptors` `[B, N]` of the batch's audio (each item over its valid samples)."""
        wav, infos = batch[0].to(self.device), batch[3]
        lengths = torch.tensor([min(info.n_frames, wav.shape[-1]) for info in infos], device=self.device)
        return music_descriptors(wav, self.cfg.sample_rate, lengths)

    def _teacher_descriptors(self, descriptors: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """The descriptors a batch is conditioned on: the music's own `[B, N]`, in training plus Gaussian noise of
        `music_descriptors.teacher_noise` times their typical spread (the predicted ones at inference are never
        exact), the ones predicted for the null video (`VideoEncoder.null_descriptors`) for the items nulled by CFG
        dropout, as at inference."""
        std = torch.tensor(self.model.visual_config.descriptor_std, device=descriptors.device)
        noise = float(self.cfg.music_descriptors.teacher_noise) if self.model.training else 0.0
        noisy = descriptors + noise * std * torch.randn_like(descriptors)
        null = self._null_descriptors().to(noisy)
        return torch.where(drop[:, None].to(descriptors.device), null, noisy)

    def run_step(self, idx: int, batch: Batch, metrics: dict) -> dict:  # type: ignore[override]
        """AudioCraft's step; outside training, also the `video_gain` metric (`_video_gain`)."""
        metrics = super().run_step(idx, batch, metrics)
        if not self.is_training:
            metrics["video_gain"] = self._video_gain(batch)
        return metrics

    @torch.no_grad()
    def _video_gain(self, batch: Batch) -> torch.Tensor:
        """How much the LM reads the video: the mean log-likelihood per token (nats) of each item's music given its
        own condition (video, and text for a model with a text conditioner) minus given the null condition (null
        video, no text), averaged over the batch. The cross-entropy can fall while this
        stays near 0 (an LM that learnt the music and ignores the picture; model/README.md), and it is the gap
        that classifier-free guidance amplifies at inference."""
        tokens, padding_mask = self._audio_tokens(batch)
        video, _ = self._video_batch(batch, dropout=False)
        with self.autocast:
            conditions = self.model.compute_video_condition(VideoBatch.cat([video, self._null_batch(video)]))
            output = self.model.compute_predictions(tokens.repeat(2, 1, 1), [], conditions)
        own, null = mean_token_log_likelihood(output.logits, tokens.repeat(2, 1, 1),
                                              padding_mask.repeat(2, 1, 1) & output.mask).chunk(2)
        return (own - null).mean()

    def _null_batch(self, video: VideoBatch) -> VideoBatch:
        """The null condition for a batch: the null video for every item, no text, and the null video's music
        descriptors for a model built with them (as CFG dropout leaves it)."""
        null = VideoBatch(self._null_visual(video.local_frames), self._null_visual(video.global_frames))
        if self.model.visual_config.music_descriptors:
            null.music_descriptors = self._null_descriptors().expand(len(video), -1)
        return null

    # ----------------------------------------------------------- generation
    @torch.no_grad()
    def run_generate_step(self, batch: Batch, gen_duration: float, prompt_duration: tp.Optional[float] = None,
                          remove_prompt: bool = False, **generation_params) -> dict:  # type: ignore[override]
        """Generate `gen_duration` seconds of music for each video of the batch (no audio prompt)."""
        start = time.time()
        audio = batch[0]
        video, _ = self._video_batch(batch, dropout=False)
        with self.autocast:
            conditions = self.model.compute_video_condition(
                video.guidance_batch(self._null_batch(video), self.model.cfg_coef_beta is not None))
            tokens = self.model.generate(cfg_condition_tensors=conditions,
                                         max_gen_len=int(round(gen_duration * self.compression_model.frame_rate)),
                                         cfg_coef=self.cfg.classifier_free_guidance.inference_coef,
                                         **self.generation_params)
        gen_audio = self.compression_model.decode(tokens, None)
        return {"rtf": (time.time() - start) / gen_duration, "ref_audio": audio, "gen_audio": gen_audio,
                "gen_tokens": tokens}

    def generate_audio(self) -> dict:
        """Generate stage: music for every item of the generate set, written (in-process, no ffmpeg) to
        `<xp>/samples/epoch_<N>/`: a loudness-normalised wav per item, and an mp4 of the video with the music
        when the segment starts at the video's beginning."""
        folder = Path(self.xp.folder) / self.cfg.generate.path / f"epoch_{self.epoch:04d}"
        loader = self.dataloaders["generate"]
        lp = self.log_progress(self.current_stage, loader, total=len(loader), updates=self.log_updates)
        duration = self.cfg.generate.lm.gen_duration or get_dataset_from_loader(loader).segment_duration
        average = flashy.averager()
        metrics: dict = {}
        index = flashy.distrib.rank() * len(get_dataset_from_loader(loader))
        for batch in lp:
            infos = batch[3]
            outputs = self.run_generate_step(batch, gen_duration=duration)
            for wav, info in zip(outputs["gen_audio"].cpu(), infos):
                stem = f"{index:04d}_{Path(info.meta.video_path).stem}_{info.seek_time:.1f}s"
                music = normalize_music(wav, self.compression_model.sample_rate)
                write_wav(folder / f"{stem}.wav", music, self.compression_model.sample_rate)
                if info.seek_time == 0:
                    mux_music(info.meta.video_path, music, self.compression_model.sample_rate,
                              folder / f"{stem}.mp4", duration=duration)
                index += 1
            metrics = average({"rtf": outputs["rtf"]})
        self.logger.info("generated samples in %s", folder)
        flashy.distrib.barrier()
        return metrics

    def evaluate_audio_generation(self) -> dict:
        """Reference-based metrics (FAD, KLD, CLAP) need weights this solver does not fetch; base metrics
        (cross-entropy, perplexity on the evaluate set) come from `evaluate`."""
        enabled = [name for name in ("fad", "kld", "text_consistency", "chroma_cosine")
                   if self.cfg.evaluate.metrics.get(name)]
        if enabled:
            raise ValueError(f"evaluate.metrics {enabled} are not available in the VidMuse solver; compute them "
                             "on generated samples with python -m audiocraft_ext.evaluate")
        return {}

    # --------------------------------------------------------- checkpoints
    def load_from_pretrained(self, name: str) -> dict:
        """`continue_from=//pretrained/NAME`: a VidMuse checkpoint (exported folder or file, a training XP's
        checkpoint.th, or a hub id), else an AudioCraft MusicGen checkpoint. Only the weights the source has are
        loaded, and of those only the ones of the same shape; the rest keep their initialisation (a descriptor head
        that reads other statistics is then fitted anew: `restore`)."""
        try:
            state = best_model_state(load_package(find_lm_file(name)))  # exported, or this solver's checkpoint.th
        except ModelFilesMissing:
            state = audiocraft_models.loaders.load_lm_model_ckpt(name)["best_state"]
        if is_official_state_dict(state):
            state = map_official_state_dict(state)
        ours = self.model.state_dict()
        kept = {k: v for k, v in state.items() if k in ours and v.shape == ours[k].shape}
        if any(k.startswith("video_encoder.descriptor_head.") and k not in kept for k in ours):
            kept.pop("video_encoder.descriptor_fit_clips", None)  # the head is not loaded whole: not fitted
        dropped = sorted(set(state) - set(kept))
        if dropped:
            self.logger.info("continue_from %s: %d tensors without a counterpart of their shape ignored (e.g. %s)",
                             name, len(dropped), dropped[0])
        missing = sorted(set(ours) - set(kept))
        if missing:
            self.logger.info("continue_from %s: %d tensors keep their initialisation (e.g. %s)", name, len(missing),
                             missing[0])
        return {"best_state": {"model": kept}}
