"""The codec's STFT autoencoder (`encodec.autoencoder: stft`): shapes, building, export, and the property it is
for: a tone between the frame rate's multiples comes out at its own pitch."""

import math

import librosa
import numpy as np
import pytest
import torch
from torch import nn

from audiocraft_ext.models.builders import get_compression_model
from audiocraft_ext.models.export import export_compression_model
from audiocraft_ext.models.loaders import load_compression_model
from audiocraft_ext.modules.stft_autoencoder import ISTFTDecoder, STFTEncoder, fit_spectral_basis
from audiocraft_ext.synth.attributes import comb_share

from conftest import tiny_codec_cfg


def stft_codec_cfg():
    cfg = tiny_codec_cfg()
    cfg.encodec.autoencoder = "stft"
    cfg.stft = {"dimension": 16, "hop_length": 640, "n_fft": None, "floor": 1e-5, "max_log_magnitude": 4.6,
                "hidden": 32, "num_blocks": 2}
    return cfg


@pytest.mark.parametrize("channels", [1, 2])
def test_one_latent_frame_per_hop(channels):
    encoder = STFTEncoder(16, channels=channels, hop_length=640, hidden=32, num_blocks=1)
    decoder = ISTFTDecoder(16, channels=channels, hop_length=640, hidden=32, num_blocks=1)
    assert encoder.n_fft == decoder.n_fft == 2560
    assert encoder(torch.randn(3, channels, 7 * 640)).shape == (3, 16, 7)
    assert encoder(torch.randn(3, channels, 7 * 640 - 100)).shape == (3, 16, 7)  # a partial last frame counts
    assert decoder(torch.randn(3, 16, 7)).shape == (3, channels, 7 * 640)
    assert decoder.spectrum(torch.randn(3, 16, 7)).shape == (3 * channels, 1281, 7)


def test_a_window_shorter_than_the_hop_is_refused():
    with pytest.raises(ValueError, match="at least the hop"):
        ISTFTDecoder(16, hop_length=640, n_fft=512)


def test_builder_and_export_round_trip(tmp_path):
    torch.manual_seed(0)
    codec = get_compression_model(stft_codec_cfg()).eval()
    assert isinstance(codec.encoder, STFTEncoder) and isinstance(codec.decoder, ISTFTDecoder)
    assert (codec.frame_rate, codec.num_codebooks) == (50, 4)
    export_compression_model(codec, stft_codec_cfg(), tmp_path / "compression_state_dict.bin")
    loaded = load_compression_model(tmp_path)
    audio = torch.randn(1, 1, 16000)
    with torch.no_grad():
        codes, scale = codec.encode(audio)
        assert codes.shape == (1, 4, 25)
        assert torch.equal(loaded.encode(audio)[0], codes)
        assert torch.equal(loaded.decode(codes, scale), codec.decode(codes, scale))
        assert codec(audio).x.shape == audio.shape


@pytest.mark.parametrize("bin_index, deviation, frequency", [(11, 0.0, 137.5), (10, 0.2, 130.0), (10, -0.2, 120.0)])
def test_a_held_spectrum_sounds_at_its_own_pitch_off_the_frame_rate_comb(bin_index, deviation, frequency):
    """The same frame predicted 50 times over: one bin (12.5 Hz apart at 2560 points), its phase advance moved by
    `deviation` half-turns per hop, comes out as one tone at the bin's centre frequency plus the deviation's, not on
    the 50 Hz comb where a decoder that builds each frame on its own puts a held sound."""
    decoder = ISTFTDecoder(2 * 1281, hop_length=640, hidden=32, num_blocks=1)
    decoder.model = nn.Identity()  # the frames given directly: log-magnitudes, then phase-advance deviations
    nn.init.zeros_(decoder.basis.weight)
    nn.init.zeros_(decoder.basis.bias)
    frames = torch.zeros(1, 2 * decoder.num_bins, 50)
    frames[:, :decoder.num_bins] = -20.0
    frames[:, bin_index] = 0.0
    frames[:, decoder.num_bins + bin_index] = math.atanh(deviation)
    with torch.no_grad():
        output = decoder(frames)[0, 0].numpy()
    assert comb_share(output, 32000) < 0.01
    spectrum = abs(librosa.stft(output[3200:-3200], n_fft=16384)).mean(1)  # 1.95 Hz bins, edges left out
    assert abs(spectrum.argmax() * 32000 / 16384 - frequency) < 2


def test_fit_spectral_basis_starts_as_the_whitened_pca_codec():
    """After the fit, the latent of the fitted audio is white (zero mean, unit variance per dimension), and the
    decoder's log-magnitudes are the frames' projection on their first principal components, computed here
    independently with numpy's SVD: the stacks start silent."""
    sr, D = 32000, 8
    t = torch.arange(2 * sr) / sr
    notes = [110.0, 147.0, 196.0, 262.0, 349.0, 466.0]
    audio = torch.stack([sum(torch.sin(2 * math.pi * f * (h + 1) * t) / (h + 1) * (1 + (i + h) % 3)
                             for h in range(3) for f in notes[i:i + 2]) for i in range(5)])[:, None] * 0.02
    encoder = STFTEncoder(D, hop_length=640, hidden=32, num_blocks=1)
    decoder = ISTFTDecoder(D, hop_length=640, hidden=32, num_blocks=1)
    latent = fit_spectral_basis(encoder, decoder, audio)
    assert latent.shape == (5, D, 100)
    flat = latent.transpose(1, 2).reshape(-1, D)
    assert torch.allclose(flat.mean(0), torch.zeros(D), atol=1e-3)
    assert torch.allclose(flat.std(0), torch.ones(D), atol=1e-3)
    frames = encoder.log_spectrum(audio).transpose(1, 2).reshape(-1, decoder.num_bins).double().numpy()
    mean = frames.mean(0)
    components = np.linalg.svd(frames - mean, full_matrices=False)[2][:D]
    projection = (frames - mean) @ components.T @ components + mean
    with torch.no_grad():
        predicted = decoder.spectrum(latent).abs().log().transpose(1, 2).reshape(-1, decoder.num_bins)
    assert np.abs(predicted.double().numpy() - projection).max() < 1e-2
    assert np.abs(projection - frames).mean() < np.abs(mean - frames).mean() / 2  # the basis holds the notes
    # a decoder reading 5 frames starts as the same codec on a held latent, averaged over frames otherwise
    smooth = ISTFTDecoder(D, hop_length=640, hidden=32, num_blocks=1, basis_kernel_size=5)
    fit_spectral_basis(encoder, smooth, audio)
    held = latent[:1, :, :1].expand(1, D, 20)
    with torch.no_grad():
        assert torch.allclose(smooth.spectrum(held).abs().log(), decoder.spectrum(held).abs().log(), atol=1e-3)
        jitter = smooth.spectrum(latent).abs().log().diff(dim=-1).abs().mean()
        assert jitter < decoder.spectrum(latent).abs().log().diff(dim=-1).abs().mean()
    with pytest.raises(ValueError, match="odd"):
        ISTFTDecoder(D, hop_length=640, basis_kernel_size=2)
    with pytest.raises(ValueError, match="principal components"):
        fit_spectral_basis(STFTEncoder(512, hop_length=640), ISTFTDecoder(512, hop_length=640), audio[:1, :, :6400])


@pytest.mark.parametrize("norm", ["weight_norm", "none"])
def test_fit_spectral_basis_silences_the_stacks_and_keeps_them_trainable(norm):
    """With or without weight norm, both stacks output exactly zero after the fit, and their last layers still
    get gradients (so training can grow them)."""
    audio = torch.randn(2, 1, 32000) * 0.1
    encoder = STFTEncoder(8, hop_length=640, hidden=16, num_blocks=1, norm=norm)
    decoder = ISTFTDecoder(8, hop_length=640, hidden=16, num_blocks=1, norm=norm)
    latent = fit_spectral_basis(encoder, decoder, audio)
    features = encoder.log_spectrum(audio)
    assert not encoder.model(features).any()
    out = decoder.model(latent.detach())
    assert not out.any()
    out.pow(2).add(out).sum().backward()
    last = decoder.model[-1].conv.conv
    assert (last.weight_g if norm == "weight_norm" else last.weight).grad.abs().sum() > 0
