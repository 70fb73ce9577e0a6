"""`VidMuse`: music for videos, on AudioCraft's `BaseGenModel`.

Beyond the release's wrapper: a batch of videos of different lengths (each item gets the same music it would get
alone with the same seed), music exactly as long as each video, sliding windows with the right frames for every
window (the last included), per-item random generators instead of reseeding the global RNG, any device.
"""

from dataclasses import dataclass
import logging
import math
from pathlib import Path
import secrets
import typing as tp

from audiocraft.models.encodec import CompressionModel
from audiocraft.models.genmodel import BaseGenModel
from audiocraft.utils.autocast import TorchAutocast
import numpy as np
from omegaconf import OmegaConf
import torch
from tqdm import tqdm

from ..media.beat_sync import DEFAULT_MAX_TEMPO_CHANGE, CutSyncReport, check_max_tempo_change, sync_to_cuts
from ..media.cuts import detect_cuts
from ..media.extensions import is_image
from ..media.video import (VideoFrames, VideoInfo, load_video_frames, num_local_frames, read_image,
                           still_video_frames)
from ..modules.music_descriptors import DESCRIPTORS, music_descriptors as measure_descriptors
from ..utils.devices import auto_device
from .lm import VideoBatch, VidMuseLM, check_cfg_coef_beta, check_rerank_candidates, pad_frames
from .loaders import INT8, load_compression_model, load_lm_model

logger = logging.getLogger(__name__)

VideoInput = tp.Union[VideoFrames, str, Path]
Seed = tp.Optional[tp.Union[int, tp.Sequence[int]]]
SEED_BOUND = 2 ** 31 - 1  # seeds are in [0, SEED_BOUND): any of them fits an int32 and a JSON number
RERANK_MEASURE_BATCH = 8  # draws measured together when reranking (a 30 s draw's spectrogram takes ~16 MB)


def draw_seed() -> int:
    """A fresh random sampling seed (from the OS's entropy, not torch's RNG, which starts the same in every process:
    two runs draw different seeds; record the seed to repeat a run)."""
    return secrets.randbelow(SEED_BOUND)


def candidate_seed(seed: int, candidate: int) -> int:
    """The sampling seed of draw `candidate` of an item seeded `seed` when several are reranked: `seed` itself for
    draw 0 (so one draw is the plain generation), else one derived from both (NumPy's `SeedSequence`, which takes
    no negative entropy: a negative seed enters as its two's complement, as torch takes it)."""
    if candidate == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2 ** 64, candidate]).generate_state(1, np.uint64)[0] % 2 ** 63)


@dataclass
class Window:
    """One generation window of one video.

    Attributes:
        start_token: first token of the window (prompt included), in the video's token sequence.
        num_tokens: tokens the window generates, prompt included.
        prompt_tokens: tokens carried over from the previous window.
        start_frame: first local frame of the window.
        num_frames: local frames covering the window.
    """
    start_token: int
    num_tokens: int
    prompt_tokens: int
    start_frame: int
    num_frames: int


def plan_windows(total_tokens: int, frame_rate: float, local_fps: float, window_seconds: float,
                 stride_seconds: float) -> tp.List[Window]:
    """Split `total_tokens` of music into windows of `window_seconds`, each starting `stride_seconds` after the
    previous one and prompted by the previous window's last `window - stride` seconds (AudioCraft's scheme).

    Local frames follow the audio: window w covers audio from `w * stride` s, so its frames start at
    `w * stride * local_fps`; the last window takes the frames of its own span.
    """
    window_tokens = int(window_seconds * frame_rate)
    stride_tokens = int(stride_seconds * frame_rate)
    prompt_tokens = window_tokens - stride_tokens
    windows = [Window(0, min(total_tokens, window_tokens), 0, 0,
                      num_local_frames(min(total_tokens, window_tokens) / frame_rate, local_fps))]
    start = stride_tokens
    while total_tokens > window_tokens and start + prompt_tokens < total_tokens:
        num_tokens = min(total_tokens - start, window_tokens)
        windows.append(Window(start, num_tokens, prompt_tokens, round(start / frame_rate * local_fps),
                              num_local_frames(num_tokens / frame_rate, local_fps)))
        start += stride_tokens
    return windows


class VidMuse(BaseGenModel):
    """Video-to-music generation.

    Args:
        name: model name or folder.
        compression_model: the audio codec (EnCodec 32 kHz for the release).
        lm: the `VidMuseLM`.
        max_duration: length of a generation window in seconds; default: the window the LM was trained on
            (`lm.cfg.dataset.segment_duration`, as AudioCraft's models; 30 s for the release), else 30.
        autocast_dtype: mixed precision on CUDA (`torch.float16` as the release, `torch.bfloat16`, or None).
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: VidMuseLM,
                 max_duration: tp.Optional[float] = None,
                 autocast_dtype: tp.Optional[torch.dtype] = torch.float16):
        if max_duration is None:
            cfg = getattr(lm, "cfg", None)
            trained = OmegaConf.select(cfg, "dataset.segment_duration") if cfg is not None else None
            max_duration = float(trained or 30.0)
        super().__init__(name, compression_model, lm, max_duration)
        self.lm: VidMuseLM = lm
        self.autocast = TorchAutocast(enabled=self.device.type == "cuda" and autocast_dtype is not None,
                                      device_type=self.device.type, dtype=autocast_dtype)
        self.set_generation_params()

    @staticmethod
    def get_pretrained(name: tp.Union[str, Path] = "./model", device: tp.Optional[tp.Union[str, torch.device]] = None,
                       dtype: tp.Optional[tp.Union[str, torch.dtype]] = None,
                       clip_num_heads: tp.Optional[int] = None) -> "VidMuse":
        """Load a checkpoint folder (official layout or this project's export) or a hub id.

        Args:
            name: folder with `state_dict.bin` + `compression_state_dict.bin`, or a hub id.
            device: default CUDA when available, else CPU (always CPU for int8).
            dtype: LM weight format: float32, float16, bfloat16, or int8 (CPU only, see `load_lm_model`);
                default float32 on CPU, float16 on CUDA (as the release).
            clip_num_heads: CLIP head count for checkpoints that do not record it (default ViT-B/32's 12).
        """
        device = auto_device(device, gpu_allowed=dtype != INT8)
        lm = load_lm_model(name, device=device, dtype=dtype, clip_num_heads=clip_num_heads)
        compression_model = load_compression_model(name, device=device)
        return VidMuse(str(name), compression_model, lm)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, cfg_coef: float = 3.0,
                              cfg_coef_beta: tp.Optional[float] = None, extend_stride: tp.Optional[float] = None,
                              rerank_candidates: tp.Optional[int] = None):
        """Sampling parameters (defaults: the release's).

        Args:
            use_sampling: sample (True) or take the argmax.
            top_k: keep the k most likely tokens (0: off; clamped to the codebook size).
            top_p: nucleus sampling threshold (0: off; takes precedence over top_k).
            temperature: softmax temperature (0: greedy).
            cfg_coef: classifier-free guidance coefficient (null condition: a black video).
            cfg_coef_beta: for a model built with music descriptors, double guidance: the descriptors guided by
                `cfg_coef`, what the picture adds to them by `cfg_coef * cfg_coef_beta` (1: as plain guidance).
                Default: the model's own (`classifier_free_guidance.inference_coef_beta` of its config).
            extend_stride: seconds between the starts of consecutive windows for videos longer than
                `max_duration`; the rest of the window is the audio prompt. Default: a 0.5 s prompt
                (29.5 s with 30 s windows, as the release).
            rerank_candidates: for a model built with music descriptors, draws generated per video, of which the
                one whose own `music_descriptors` (measured on its audio) are nearest those it was conditioned on
                is kept (1: the plain draw; the time and the LM's batch grow with it). Default: the model's own
                (`VidMuseLM.rerank_candidates`, from `music_descriptors.rerank_candidates` of its config).
        """
        if rerank_candidates is None:
            rerank_candidates = self.lm.rerank_candidates
        check_rerank_candidates(rerank_candidates, self.lm.visual_config)
        if extend_stride is None:
            extend_stride = self.max_duration - 0.5
        if temperature < 0 or top_k < 0 or not 0 <= top_p <= 1:
            raise ValueError("temperature and top_k must be >= 0 and top_p in [0, 1]")
        check_cfg_coef_beta(cfg_coef_beta, self.lm.visual_config)
        if not 0 < extend_stride < self.max_duration:
            raise ValueError(f"extend_stride must be in (0, {self.max_duration}), got {extend_stride}")
        local_fps = self.lm.visual_config.local_fps
        for rate, what in ((self.frame_rate, "audio frame"), (local_fps, "local video frame")):
            if abs(extend_stride * rate - round(extend_stride * rate)) > 1e-6:
                raise ValueError(f"extend_stride {extend_stride} s is not a whole number of {what}s ({rate} Hz)")
        self.extend_stride = extend_stride
        self.rerank_candidates = rerank_candidates
        self.generation_params = {"use_sampling": use_sampling, "temp": temperature, "top_k": top_k,
                                  "top_p": top_p, "cfg_coef": cfg_coef, "cfg_coef_beta": cfg_coef_beta}

    def frame_sampling(self, resize_mode: str) -> tp.Dict[str, tp.Any]:
        """How this model samples frames: local fps, global frame count, frame size, resize mode."""
        config = self.lm.visual_config
        return dict(local_fps=config.local_fps, num_global_frames=config.num_global_frames,
                    size=config.clip["image_size"], resize_mode=resize_mode)

    def load_video(self, path: tp.Union[str, Path], resize_mode: str = "squash", duration: tp.Optional[float] = None,
                   info: tp.Optional[VideoInfo] = None) -> VideoFrames:
        """Read a video's frames as this model samples them, for its first `duration` seconds (default: all);
        `info` is its `probe_video` result when the caller has it."""
        return load_video_frames(path, duration=duration, info=info, **self.frame_sampling(resize_mode))

    def image_frames(self, image: torch.Tensor, duration: float, resize_mode: str = "squash",
                     path: tp.Optional[str] = None) -> VideoFrames:
        """An image uint8 `[3, H, W]` as a still video of `duration` seconds (every frame is the picture)."""
        return still_video_frames(image, duration, path=path, **self.frame_sampling(resize_mode))

    def load_image(self, path: tp.Union[str, Path], duration: float, resize_mode: str = "squash") -> VideoFrames:
        """An image file as a still video of `duration` seconds."""
        return self.image_frames(read_image(path), duration, resize_mode, str(path))

    def _seeds(self, seed: Seed, batch: int) -> tp.List[int]:
        if seed is None:
            return [draw_seed() for _ in range(batch)]
        if isinstance(seed, int):
            return [seed] * batch
        if len(seed) != batch:
            raise ValueError(f"{len(seed)} seeds for {batch} videos")
        return list(seed)

    def _check_frames(self, frames: VideoFrames) -> VideoFrames:
        local_fps = self.lm.visual_config.local_fps
        if abs(frames.local_fps - local_fps) > 1e-6:
            raise ValueError(f"{frames.path or 'video'}: local frames at {frames.local_fps} fps, "
                             f"the model uses {local_fps}")
        return frames

    @torch.no_grad()
    def generate(self, videos: tp.Sequence[VideoInput], seed: Seed = None,  # type: ignore[override]
                 progress: bool = False, return_tokens: bool = False,
                 descriptions: tp.Optional[tp.Sequence[tp.Optional[str]]] = None, sync_cuts: bool = False,
                 max_tempo_change: float = DEFAULT_MAX_TEMPO_CHANGE,
                 music_descriptors: tp.Optional[torch.Tensor] = None
                 ) -> tp.Union[tp.List[torch.Tensor], tp.Tuple[tp.List[torch.Tensor], tp.List[torch.Tensor]]]:
        """Generate music for a batch of videos.

        Args:
            videos: `VideoFrames` or video paths (read with `load_video`).
            seed: one seed for every item, one per item, or None (a fresh `draw_seed` per item). An item's music
                depends on its seed, its video and `rerank_candidates` only, not on the rest of the batch. With
                `rerank_candidates` N > 1, each video is drawn N times side by side (an LM batch of B * N; draw
                k seeded `candidate_seed(seed, k)`) and the draw whose measured descriptors are nearest the
                ones it was conditioned on is kept (`nearest_draw`).
            progress: show a progress bar over decoding steps.
            return_tokens: also return the codes.
            descriptions: a text per video steering the music with the picture (models with a text conditioner).
            sync_cuts: move the music's beats onto the video's scene cuts (`beats_to_cuts`); same length.
            max_tempo_change: largest local tempo change `sync_cuts` may make (0.15: ±15 %).
            music_descriptors: `[B, N]` `music_descriptors` values (log(1 + onsets per second), register) to
                condition on instead of those the model predicts from each video (models built with them only),
                e.g. to set the tempo and register by hand or to measure how closely the LM follows them (NaN
                values: the predicted ones; `modules.music_descriptors.descriptor_values` converts a row from
                onsets per second and Hz); also the target the draws are reranked by.
        Returns:
            One waveform `[C, round(duration * sample_rate)]` per video (and codes `[K, ceil(duration * frame_rate)]`,
            the kept draw's).
        """
        if sync_cuts:
            check_max_tempo_change(max_tempo_change)
        frames = [self._check_frames(v) if isinstance(v, VideoFrames) else self.load_video(v) for v in videos]
        texts = list(descriptions) if descriptions is not None else [None] * len(frames)
        if len(texts) != len(frames):
            raise ValueError(f"{len(texts)} descriptions for {len(frames)} videos")
        if not frames:
            return ([], []) if return_tokens else []
        seeds = self._seeds(seed, len(frames))
        if music_descriptors is None:
            descriptors = self.predict_music_descriptors(frames)  # once per video, not per window
        elif not self.lm.visual_config.music_descriptors:
            raise ValueError("music_descriptors given, but this model was built without music descriptors")
        elif music_descriptors.shape != (len(frames), len(DESCRIPTORS)):
            raise ValueError(f"music_descriptors must be [{len(frames)}, {len(DESCRIPTORS)}] "
                             f"({', '.join(DESCRIPTORS)}), got {list(music_descriptors.shape)}")
        else:
            descriptors = music_descriptors.float().to(self.device)
            missing = descriptors.isnan()
            if missing.any():  # predicted from the whole video, as without them (also the reranking's target)
                rows = missing.any(1)
                predicted = torch.full_like(descriptors, math.nan)
                predicted[rows] = self.predict_music_descriptors([f for f, m in zip(frames, rows) if m]).float()
                descriptors = torch.where(missing, predicted, descriptors)  # a new tensor: the caller's is kept
        # the LM's items: every video's draws side by side (video i's are items i * candidates ...)
        candidates = self.rerank_candidates
        items = [item for item in frames for _ in range(candidates)]
        texts = [text for text in texts for _ in range(candidates)]
        seeds = [candidate_seed(s, k) for s in seeds for k in range(candidates)]
        if descriptors is not None:
            descriptors = descriptors.repeat_interleave(candidates, dim=0)
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        local_fps = self.lm.visual_config.local_fps
        plans = [plan_windows(math.ceil(item.duration * self.frame_rate - 1e-6), self.frame_rate, local_fps,
                              self.max_duration, self.extend_stride) for item in items]
        num_windows = max(len(p) for p in plans)
        steps_per_window = [max(p[w].num_tokens - p[w].prompt_tokens for p in plans if w < len(p))
                            for w in range(num_windows)]
        total_steps = sum(steps_per_window)
        bar = tqdm(total=total_steps, desc="generating", unit="step", disable=not progress, leave=False)
        chunks: tp.List[tp.List[torch.Tensor]] = [[] for _ in items]
        last_codes: tp.List[tp.Optional[torch.Tensor]] = [None] * len(items)
        done_steps = 0

        def on_step(generated: int, to_generate: int):
            done = done_steps + min(generated, steps_per_window[window])
            bar.update(done - bar.n)
            if self._progress_callback is not None:
                self._progress_callback(done, total_steps)

        try:
            for window in range(num_windows):
                active = [i for i, p in enumerate(plans) if window < len(p)]
                batch = self.window_batch([items[i] for i in active],
                                          [(plans[i][window].start_frame, plans[i][window].num_frames) for i in active],
                                          None if descriptors is None else descriptors[active])
                if any(texts[i] is not None for i in active):
                    batch.descriptions = [texts[i] for i in active]
                prompt = None
                if window > 0:
                    prompt = torch.stack([last_codes[i][:, -plans[i][window].prompt_tokens:]  # type: ignore
                                          for i in active])
                with self.autocast:
                    lengths = [plans[i][window].num_tokens for i in active]
                    codes = self.lm.generate(prompt, video=batch, generators=[generators[i] for i in active],
                                             max_gen_len=max(lengths), lengths=lengths, callback=on_step,
                                             **self.generation_params)
                for row, i in enumerate(active):
                    plan = plans[i][window]
                    item_codes = codes[row, :, :plan.num_tokens]
                    last_codes[i] = item_codes
                    chunks[i].append(item_codes[:, plan.prompt_tokens:])
                done_steps += steps_per_window[window]
        finally:
            bar.close()
        tokens = [torch.cat(c, dim=-1) for c in chunks]
        audio = [self._decode(t, item.duration) for t, item in zip(tokens, items)]
        if candidates > 1:
            kept = [i * candidates + self.nearest_draw(audio[i * candidates:(i + 1) * candidates],
                                                       descriptors[i * candidates])  # type: ignore[index]
                    for i in range(len(frames))]
            audio, tokens = [audio[k] for k in kept], [tokens[k] for k in kept]
        if sync_cuts:
            audio = [self.beats_to_cuts(wav, item, max_tempo_change)[0] for wav, item in zip(audio, frames)]
        return (audio, tokens) if return_tokens else audio

    def nearest_draw(self, draws: tp.Sequence[torch.Tensor], descriptors: torch.Tensor) -> int:
        """Index of the draw (waveforms `[C, N]` of one length, on any device) whose `music_descriptors`, measured
        on its audio, are nearest `descriptors` `[len(DESCRIPTORS)]` on the model's unit scale (in units of each
        descriptor's spread, `VisualConfig.descriptor_std`); measured a few draws at a time, so that the memory
        stays that of a few however many draws there are."""
        encoder = self.lm.video_encoder
        measured = encoder.normalize_descriptors(torch.cat([
            measure_descriptors(torch.stack(draws[start:start + RERANK_MEASURE_BATCH]).cpu(), self.sample_rate)
            for start in range(0, len(draws), RERANK_MEASURE_BATCH)]))
        target = encoder.normalize_descriptors(descriptors.cpu()[None])  # [1, len(DESCRIPTORS)]
        return int((measured - target).pow(2).sum(1).argmin())  # measured: [len(draws), len(DESCRIPTORS)]

    def beats_to_cuts(self, music: torch.Tensor, video: VideoFrames,
                  max_tempo_change: float = DEFAULT_MAX_TEMPO_CHANGE) -> tp.Tuple[torch.Tensor, CutSyncReport]:
        """Move the beats of `music` `[C, N]` (this model's sample rate) onto the scene cuts of `video` (its file,
        over the music's span from the start) by local time-stretches within `1 ± max_tempo_change`.

        Returns the music (same shape) and the report; a still image or a video without cuts or without a file has
        no cuts, and its music comes back unchanged.
        """
        has_cuts = video.path is not None and not is_image(video.path)
        cuts = detect_cuts(video.path, video.duration) if has_cuts else []  # type: ignore[arg-type]
        return sync_to_cuts(music, self.sample_rate, cuts, max_tempo_change)

    @torch.no_grad()
    def predict_music_descriptors(self, items: tp.Sequence[VideoFrames]) -> tp.Optional[torch.Tensor]:
        """The `music_descriptors` values `[B, N]` a model built with them predicts from each item's whole video
        (its local frames and global frames, as the head was fitted); None for a model built without them."""
        if not self.lm.visual_config.music_descriptors:
            return None
        encoder = self.lm.video_encoder
        local, lengths = pad_frames([item.local_frames[None] for item in items])
        glob = torch.stack([item.global_frames for item in items]).to(self.device)
        local = local.to(self.device)
        with self.autocast:
            unit = encoder.predict_descriptors(encoder.tokens(glob), encoder.tokens(local), local, lengths)
        return encoder.denormalize_descriptors(unit)

    def window_batch(self, items: tp.Sequence[VideoFrames], spans: tp.Sequence[tp.Tuple[int, int]],
                     music_descriptors: tp.Optional[torch.Tensor] = None) -> VideoBatch:
        """A `VideoBatch` of each item's local frames over a span (`(start_frame, num_frames)`; padded to the
        longest, the last frame repeated past the video's end) and its global frames; for a model built with
        `music_descriptors`, also the descriptors it predicts from each item's whole video (`music_descriptors`
        `[B, N]` when already computed, else `predict_music_descriptors`)."""
        frames = []
        for item, (start, count) in zip(items, spans):
            local = item.local_window(start, count)
            if local.shape[1] < count:  # repeat the last frame
                local = torch.cat([local, local[:, -1:].expand(-1, count - local.shape[1], -1, -1)], dim=1)
            frames.append(local[None])
        global_counts = {item.global_frames.shape[1] for item in items}
        if len(global_counts) > 1:
            raise ValueError(f"videos of one batch need the same number of global frames, got {global_counts}")
        local, lengths = pad_frames(frames)
        if music_descriptors is None:
            music_descriptors = self.predict_music_descriptors(items)
        return VideoBatch(local, torch.stack([item.global_frames for item in items]), local_lengths=lengths,
                          music_descriptors=music_descriptors)

    def _decode(self, tokens: torch.Tensor, duration: float) -> torch.Tensor:
        """Codes `[K, T]` -> waveform `[C, round(duration * sample_rate)]` (decoded alone: no padding effects)."""
        wav = self.compression_model.decode(tokens[None].to(self.device), None)[0]
        return wav[:, :round(duration * self.sample_rate)].float().cpu()
