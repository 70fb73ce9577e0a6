"""Descriptors of a music segment read off its waveform: how dense its note onsets are and how
high its register is.

They are what a video should tell about its music (a fast picture, busy music; a bright picture, a high register),
computed from the audio alone, so any training set provides them. A VidMuse LM built with
`VisualConfig.music_descriptors` predicts them from its video and is conditioned on them; `VidMuseSolver`
trains the prediction on these values and conditions training on them (teacher forcing).
"""

import math
import typing as tp

import torch
from torch.nn import functional as F
import torchaudio

DESCRIPTORS = ("onset_rate", "register")
REGISTER_BAND = (50.0, 1000.0)  # Hz: where melodies, basses and chords put their fundamentals
MAX_ONSET_RATE = 20.0  # onsets per second a user may ask for: faster than any played note rate the corpus has


def onset_envelope(wav: torch.Tensor, sample_rate: int, hop_seconds: float = 0.01, n_mels: int = 64
                   ) -> torch.Tensor:
    """Spectral flux of the log-mel spectrogram (mean over bands of each band's rise since the previous frame),
    as librosa's onset strength: `[B, C, T]` audio -> `[B, F]` at one frame per `hop_seconds`."""
    hop = round(hop_seconds * sample_rate)
    mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=4 * hop, hop_length=hop, n_mels=n_mels
                                               ).to(wav.device)(wav.float().mean(1))  # [B, M, F]
    log_mel = 10 * torch.log10(mel.clamp(min=1e-10))
    log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - 80)  # 80 dB range, as librosa
    flux = F.relu(log_mel[..., 1:] - log_mel[..., :-1]).mean(1)
    return F.pad(flux, (1, 0))


def onset_rate(envelope: torch.Tensor, frame_rate: float, lengths: tp.Optional[torch.Tensor] = None,
               peak_seconds: float = 0.04, average_seconds: float = 0.1, delta: float = 0.07) -> torch.Tensor:
    """Onsets per second of onset envelopes `[B, F]` (`frame_rate` frames per second; `lengths` `[B]` valid
    frames, default all): peaks that are the maximum within `peak_seconds` either side and exceed the mean within
    `average_seconds` either side by `delta` (envelopes scaled to a maximum of 1), as librosa's peak picking."""
    B, frames = envelope.shape
    if lengths is None:
        lengths = torch.full((B,), frames, device=envelope.device)
    valid = torch.arange(frames, device=envelope.device)[None] < lengths.to(envelope.device)[:, None]
    env = envelope * valid
    env = env / env.amax(dim=1, keepdim=True).clamp(min=1e-8)
    peak = max(1, round(peak_seconds * frame_rate))
    average = max(1, round(average_seconds * frame_rate))
    local_max = F.max_pool1d(env[:, None], 2 * peak + 1, stride=1, padding=peak)[:, 0]
    local_mean = F.avg_pool1d(env[:, None], 2 * average + 1, stride=1, padding=average,
                              count_include_pad=False)[:, 0]
    onsets = (env >= local_max) & (env >= local_mean + delta) & (env > 0) & valid
    return onsets.sum(1).float() / (lengths.float() / frame_rate).clamp(min=1e-3)


def register(wav: torch.Tensor, sample_rate: int, band: tp.Tuple[float, float] = REGISTER_BAND,
             n_fft: int = 4096) -> torch.Tensor:
    """Pitch register of audio `[B, C, T]` -> `[B]`: the power-weighted mean of log2 frequency (Hz) over `band`,
    where melodies, basses and chords put their fundamentals (silence and zero padding add no power)."""
    spec = torch.stft(wav.float().mean(1), n_fft, n_fft // 4, window=torch.hann_window(n_fft, device=wav.device),
                      return_complex=True).abs().pow(2).mean(-1)  # [B, F]
    freqs = torch.fft.rfftfreq(n_fft, 1 / sample_rate).to(wav.device)
    inside = (freqs > band[0]) & (freqs < band[1])
    power = spec[:, inside]
    return (power * torch.log2(freqs[inside])).sum(1) / power.sum(1).clamp(min=1e-12)


def music_descriptors(wav: torch.Tensor, sample_rate: int, lengths: tp.Optional[torch.Tensor] = None
                      ) -> torch.Tensor:
    """The `DESCRIPTORS` of audio `[B, C, T]` (`lengths` `[B]`: valid samples, default all) -> `[B, 2]`:
    log(1 + onsets per second) and the `register`."""
    hop_seconds = 0.01
    hop = round(hop_seconds * sample_rate)
    frame_lengths = None
    if lengths is not None:
        frame_lengths = (lengths.to(wav.device) // hop + 1).clamp(max=wav.shape[-1] // hop + 1)
    rate = onset_rate(onset_envelope(wav, sample_rate, hop_seconds), 1 / hop_seconds, frame_lengths)
    return torch.stack([torch.log1p(rate), register(wav, sample_rate)], dim=1)


def descriptor_values(onset_rate: tp.Optional[float] = None, register_hz: tp.Optional[float] = None
                      ) -> torch.Tensor:
    """`DESCRIPTORS` values `[len(DESCRIPTORS)]` of an onset rate (onsets per second) and a register (Hz: 2 to the
    power-weighted mean log2 frequency, as `register` measures it); NaN for one not given. `ValueError` for a rate
    outside [0, MAX_ONSET_RATE] or a register outside `REGISTER_BAND` (a model's own range is narrower:
    `VideoEncoder.descriptor_range`)."""
    if onset_rate is not None and not 0 <= onset_rate <= MAX_ONSET_RATE:
        raise ValueError(f"onset_rate must be in [0, {MAX_ONSET_RATE:g}] onsets per second, got {onset_rate}")
    if register_hz is not None and not REGISTER_BAND[0] <= register_hz <= REGISTER_BAND[1]:
        raise ValueError(f"register_hz must be in [{REGISTER_BAND[0]:g}, {REGISTER_BAND[1]:g}] Hz, got {register_hz}")
    return torch.tensor([math.nan if onset_rate is None else math.log1p(onset_rate),
                         math.nan if register_hz is None else math.log2(register_hz)])


def readable_descriptors(values: torch.Tensor) -> tp.Dict[str, float]:
    """`{"onset_rate": onsets per second, "register_hz": Hz}` of `DESCRIPTORS` values `[len(DESCRIPTORS)]`
    (the inverse of `descriptor_values`)."""
    onsets, octaves = values.tolist()
    return {"onset_rate": math.expm1(onsets), "register_hz": 2 ** octaves}
