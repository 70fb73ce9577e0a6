"""A codec autoencoder on short-time spectra: an STFT encoder and an inverse-STFT decoder, one frame per latent step.

SEANet learns its filterbank and its waveform synthesis from the samples; trained on a CPU budget (a few thousand
updates, few filters) with spectral losses, its decoder repeats its output every latent frame, so that all of its
pitched power sits on multiples of the frame rate (50 Hz) whatever the notes (model card, "On the corpus's second
edition"). Here the encoder reads the log-magnitude STFT whose hop is the codec's hop, and the decoder predicts, for
every latent frame, the log-magnitude of one STFT frame (as in Vocos, Siuzdak 2023) and each bin's phase advance,
accumulated over frames as a phase vocoder does. Both run small stacks of AudioCraft's SEANet residual blocks at the
frame rate, beside a linear map between the log-magnitudes and the latent (`basis`). A held note's harmonics are
spectral lines that stay in phase from frame to frame, at any frequency, where a decoder that builds each frame on
its own puts a held sound on the frame-rate comb. Measured on the corpus (model card): from random weights, no comb
and the onsets kept after a few hundred updates, but the notes barely after thousands, when a PCA of the log-spectra
of the latent's size keeps them; started as that PCA (`fit_spectral_basis`), the notes and the onsets within ~1000
updates. Not streamable as it stands: the phases accumulate over the whole sequence.
"""

import math
import typing as tp

from audiocraft.modules.conv import StreamableConv1d
from audiocraft.modules.seanet import SEANetResnetBlock
import torch
from torch import nn


def frame_rate_stack(in_channels: int, out_channels: int, hidden: int = 256, num_blocks: int = 3,
                     kernel_size: int = 7, residual_kernel_size: int = 3, dilation_base: int = 2,
                     activation: str = "ELU", activation_params: tp.Optional[dict] = None, norm: str = "weight_norm",
                     norm_params: tp.Optional[dict] = None, compress: int = 2) -> nn.Sequential:
    """`[B, in_channels, T] -> [B, out_channels, T]`: a convolution of `kernel_size`, `num_blocks` SEANet residual
    blocks of width `hidden` (the i-th dilated by `dilation_base ** i`), the activation and a 1x1 convolution.
    `activation`, `activation_params`, `norm`, `norm_params`, `compress` as in AudioCraft's SEANet."""
    activation_params = {"alpha": 1.0} if activation_params is None else dict(activation_params)
    norm_params = dict(norm_params or {})
    layers: tp.List[nn.Module] = [StreamableConv1d(in_channels, hidden, kernel_size, norm=norm,
                                                   norm_kwargs=norm_params)]
    layers += [SEANetResnetBlock(hidden, kernel_sizes=[residual_kernel_size, 1], dilations=[dilation_base ** i, 1],
                                 activation=activation, activation_params=activation_params, norm=norm,
                                 norm_params=norm_params, compress=compress) for i in range(num_blocks)]
    layers += [getattr(nn, activation)(**activation_params),
               StreamableConv1d(hidden, out_channels, 1, norm=norm, norm_kwargs=norm_params)]
    return nn.Sequential(*layers)


class _STFTFrames(nn.Module):
    """STFT geometry shared by the encoder and the decoder: hop, window size (4 hops by default), Hann window."""

    def __init__(self, dimension: int, channels: int, hop_length: int, n_fft: tp.Optional[int]):
        super().__init__()
        self.dimension = dimension
        self.channels = channels
        self.hop_length = hop_length
        self.n_fft = n_fft or 4 * hop_length
        if self.n_fft < hop_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be at least the hop ({hop_length})")
        self.num_bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)


class STFTEncoder(_STFTFrames):
    """Audio `[B, channels, N]` -> latent `[B, dimension, ceil(N / hop_length)]`: the log-magnitude STFT (frames
    centred on multiples of the hop, as the decoder's) through a linear map (`basis`) plus `frame_rate_stack`.

    Args:
        dimension: latent size.
        channels: audio channels.
        hop_length: samples per latent frame; the STFT's hop.
        n_fft: STFT size (default 4 hops).
        floor: added to the magnitudes before the log.
        **stack: `frame_rate_stack` arguments (hidden, num_blocks, ...).
    """

    def __init__(self, dimension: int, channels: int = 1, hop_length: int = 640, n_fft: tp.Optional[int] = None,
                 floor: float = 1e-5, **stack):
        super().__init__(dimension, channels, hop_length, n_fft)
        self.floor = floor
        self.basis = nn.Conv1d(channels * self.num_bins, dimension, 1)
        self.model = frame_rate_stack(channels * self.num_bins, dimension, **stack)

    def log_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Audio `[B, channels, N]` -> log-magnitude frames `[B, channels * num_bins, ceil(N / hop_length)]`."""
        B, C, N = x.shape
        frames = math.ceil(N / self.hop_length)
        spectrum = torch.stft(x.reshape(B * C, N).float(), self.n_fft, self.hop_length, window=self.window,
                              center=True, return_complex=True)[..., :frames]
        return torch.log(spectrum.abs() + self.floor).reshape(B, C * self.num_bins, frames).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.log_spectrum(x)
        return self.basis(features) + self.model(features)


class ISTFTDecoder(_STFTFrames):
    """Latent `[B, dimension, T]` -> audio `[B, channels, T * hop_length]`.

    Args:
        dimension: latent size.
        channels: audio channels.
        hop_length: samples per latent frame; the STFT's hop.
        n_fft: STFT size (default 4 hops).
        max_log_magnitude: the predicted log-magnitudes are clipped to it (exp overflows otherwise early in training).
        basis_kernel_size: frames the linear path reads around each frame (odd). Each frame's codes are chosen on
            their own, so a quantised latent jitters from frame to frame where the music holds, and the jitter is
            heard, and detected, as onsets; a window over frames can average it out.
        **stack: `frame_rate_stack` arguments (hidden, num_blocks, ...).
    """

    def __init__(self, dimension: int, channels: int = 1, hop_length: int = 640, n_fft: tp.Optional[int] = None,
                 max_log_magnitude: float = 4.6, basis_kernel_size: int = 1, **stack):
        super().__init__(dimension, channels, hop_length, n_fft)
        if basis_kernel_size < 1 or basis_kernel_size % 2 == 0:
            raise ValueError(f"basis_kernel_size must be odd and positive, not {basis_kernel_size}")
        self.max_log_magnitude = max_log_magnitude
        self.basis = nn.Conv1d(dimension, channels * self.num_bins, basis_kernel_size)  # log-magnitudes
        self.model = frame_rate_stack(dimension, channels * 2 * self.num_bins, **stack)
        # phase turned by each bin's centre frequency over one hop (mod 2 pi)
        bins = torch.arange(self.num_bins, dtype=torch.float64)
        self.register_buffer("bin_advance", torch.remainder(2 * math.pi * bins * hop_length / self.n_fft,
                                                            2 * math.pi).float(), persistent=False)

    def spectrum(self, z: torch.Tensor) -> torch.Tensor:
        """Complex STFT frames `[B * channels, n_fft // 2 + 1, T]` predicted from the latent `[B, dimension, T]`.

        Each bin's phase advances from frame to frame by its centre frequency's advance over one hop plus a
        predicted deviation (at most half a turn either way), accumulated over the frames: a partial held over
        frames comes out as one continuous sinusoid whatever the latent carries of its phase, and the deviation
        moves it off the bin centre. A phase predicted frame by frame instead repeats itself every frame until the
        codec has learnt to carry each partial's phase, which it did not on a CPU budget (model card)."""
        B, _, T = z.shape
        out = self.model(z).reshape(B * self.channels, 2, self.num_bins, T).float()
        half = self.basis.kernel_size[0] // 2
        linear = self.basis(nn.functional.pad(z, (half, half), mode="replicate") if half else z)
        log_magnitude = out[:, 0] + linear.reshape(B * self.channels, self.num_bins, T).float()
        magnitude = torch.exp(log_magnitude.clamp(max=self.max_log_magnitude))
        advance = (self.bin_advance[:, None] + math.pi * torch.tanh(out[:, 1])).double()
        phase = torch.remainder(torch.cumsum(advance, dim=-1), 2 * math.pi).float()  # float64: no drift over T
        return torch.polar(magnitude, phase)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, _, T = z.shape
        audio = torch.istft(self.spectrum(z), self.n_fft, self.hop_length, window=self.window, center=True,
                            length=T * self.hop_length)
        return audio.reshape(B, self.channels, -1).to(z.dtype)


@torch.no_grad()
def fit_spectral_basis(encoder: STFTEncoder, decoder: ISTFTDecoder, audio: torch.Tensor) -> torch.Tensor:
    """Make the autoencoder a whitened PCA codec of the log-magnitude frames of `audio` `[B, channels, N]`: the
    encoder's `basis` projects a frame on its first `dimension` principal components, each scaled to unit variance
    over the frames, the decoder's maps them back (spread over its `basis_kernel_size` frames with triangular
    weights, which average out a quantised latent's jitter and keep a held latent's frames exact), and both
    stacks' last layers are zeroed so that they start from that codec and learn what it misses. Returns the latent
    of `audio` `[B, dimension, T]` (for example to start the codebooks on)."""
    if (encoder.n_fft, encoder.hop_length, encoder.channels) != (decoder.n_fft, decoder.hop_length, decoder.channels):
        raise ValueError("the encoder and the decoder have different STFT geometries")
    features = encoder.log_spectrum(audio).float()
    frames = features.transpose(1, 2).reshape(-1, features.shape[1])
    if len(frames) < encoder.dimension:
        raise ValueError(f"{len(frames)} frames cannot give {encoder.dimension} principal components")
    mean = frames.mean(0)
    _, singular, components = torch.linalg.svd(frames - mean, full_matrices=False)
    components = components[:encoder.dimension]  # [D, F]
    scale = (singular[:encoder.dimension] / math.sqrt(max(len(frames) - 1, 1))).clamp(min=1e-6)
    encoder.basis.weight.copy_((components / scale[:, None])[..., None])
    encoder.basis.bias.copy_(-(components @ mean) / scale)
    half = decoder.basis.kernel_size[0] // 2
    taps = torch.cat([torch.arange(1, half + 2), torch.arange(half, 0, -1)]).float()
    decoder.basis.weight.copy_((components.T * scale)[..., None] * (taps / taps.sum()))
    decoder.basis.bias.copy_(mean)
    for stack in (encoder.model, decoder.model):
        last = stack[-1].conv.conv
        if hasattr(last, "weight_g"):  # weight norm: a zero gain zeroes the weight and still gets gradients
            last.weight_g.zero_()
        else:
            last.weight.zero_()
        last.bias.zero_()
    return encoder(audio)
