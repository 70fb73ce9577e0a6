"""How much a video explains a piece of music: the likelihood score behind recommendation and retrieval.

Score of a track for a video = the model's mean log-likelihood of a window of the track's codec tokens given the
video, minus the same given the null (black) video (scored in chunks of the model's generation window). By
default only the first codebook is scored: it holds the coarse content a picture can explain (notes, onsets),
while the finer codebooks' detail adds noise to the score (measured in the model card, model/README.md).
Tracks are encoded to tokens once and cached on disk, keyed by file and codec.
"""

from pathlib import Path
import typing as tp

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_utils import convert_audio
import torch

from ..media.video import VideoFrames, num_local_frames
from ..utils.atomic import atomic_output
from ..utils.checksum import file_key, module_fingerprint
from .lm import VideoBatch, mean_token_log_likelihood
from .vidmuse import VidMuse

TOKEN_CACHE_FOLDER = ".audiocraft_ext_tokens"  # default cache, inside the folder of the tracks


@torch.no_grad()
def encode_audio(model: VidMuse, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Codec tokens `[K, T]` (int16, on CPU) of audio `[C, N]` at `sample_rate` (converted to the model's)."""
    wav = convert_audio(wav, sample_rate, model.sample_rate, model.audio_channels)
    codes, _ = model.compression_model.encode(wav[None].to(model.device))
    return codes[0].cpu().short()


class TrackTokenCache:
    """Codec tokens `[K, T]` of audio files, stored per file in `folder`, keyed by path, size, mtime and codec."""

    def __init__(self, model: VidMuse, folder: Path):
        self.model = model
        self.folder = folder
        self.codec = module_fingerprint(model.compression_model)

    @torch.no_grad()
    def tokens(self, track: Path) -> torch.Tensor:
        path = self.folder / f"{file_key(track, self.codec)}.pt"
        if path.exists():
            return torch.load(path, map_location="cpu", weights_only=True)
        codes = encode_audio(self.model, *audio_read(track))
        with atomic_output(path) as tmp:
            torch.save(codes, tmp)
        return codes


@torch.no_grad()
def mean_log_likelihood(model: VidMuse, codes: torch.Tensor, conditions: dict,
                        codebooks: tp.Optional[int] = None) -> torch.Tensor:
    """Mean log-probability of codes `[B, K, T]` under the LM with `conditions`, over the valid positions of the
    first `codebooks` codebooks (None: all): `[B]`."""
    codes = codes.long().to(model.device)
    out = model.lm.compute_predictions(codes, [], condition_tensors=conditions)
    mask = out.mask.clone()
    if codebooks is not None:
        mask[:, codebooks:] = False
    return mean_token_log_likelihood(out.logits, codes, mask)


@torch.no_grad()
def score_tracks(model: VidMuse, frames: VideoFrames, tracks: tp.Sequence[torch.Tensor], window: float = 10.0,
                 batch_size: int = 8, codebooks: tp.Optional[int] = 1) -> tp.List[float]:
    """Scores of token sequences `[K, T]` for a video: log-likelihood given the video minus given the null video,
    per token of the first `codebooks` codebooks (None: all), on the first `window` seconds (or less: the
    video's or the track's length).

    A span longer than the model's generation window is scored in consecutive chunks of that window (the model
    was never trained on longer ones), each with the local frames of its own span, as generation pairs them;
    the chunks' scores are averaged, weighted by their length.
    """
    rate = model.frame_rate
    scored_tokens = int(min(window, frames.duration) * rate)
    chunk_tokens = int(model.max_duration * rate)
    chunks: tp.Dict[tp.Tuple[int, int], tp.List[int]] = {}  # (start, length) -> tracks with that chunk
    for index, codes in enumerate(tracks):
        length = min(scored_tokens, codes.shape[-1])
        for start in range(0, length, chunk_tokens):
            chunks.setdefault((start, min(chunk_tokens, length - start)), []).append(index)
    totals, weights = [0.0] * len(tracks), [0] * len(tracks)
    descriptors = model.predict_music_descriptors([frames])  # of the whole video: once, not per chunk and track
    for (start, length), indices in chunks.items():
        video = model.window_batch([frames], [(round(start / rate * frames.local_fps),
                                               num_local_frames(length / rate, frames.local_fps))], descriptors)
        null = video.null()
        for first in range(0, len(indices), batch_size):
            batch = indices[first:first + batch_size]
            codes = torch.stack([tracks[i][:, start:start + length] for i in batch])
            n = len(batch)
            repeat = lambda b: VideoBatch.cat([b] * n)  # noqa: E731
            conditional = mean_log_likelihood(model, codes, model.lm.compute_video_condition(repeat(video)), codebooks)
            unconditional = mean_log_likelihood(model, codes, model.lm.compute_video_condition(repeat(null)),
                                                codebooks)
            for i, value in zip(batch, (conditional - unconditional).tolist()):
                totals[i] += value * length
                weights[i] += length
    return [total / weight for total, weight in zip(totals, weights)]
