"""The codec's STFT autoencoder (`encodec.autoencoder: stft`): shapes, building, export, and the property it is
for: a tone between the frame rate's multiples comes out at its own pitch."""

import math

import librosa
import pytest
import torch
from torch import nn

from audiocraft_ext.models.builders import get_compression_model
from audiocraft_ext.models.export import export_compression_model
from audiocraft_ext.models.loaders import load_compression_model
from audiocraft_ext.modules.stft_autoencoder import ISTFTDecoder, STFTEncoder
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
    decoder = ISTFTDecoder(8, hop_length=640, hidden=32, num_blocks=1)
    decoder.model = nn.Identity()  # the frames given directly: log-magnitudes, then phase-advance deviations
    frames = torch.zeros(1, 2 * decoder.num_bins, 50)
    frames[:, :decoder.num_bins] = -20.0
    frames[:, bin_index] = 0.0
    frames[:, decoder.num_bins + bin_index] = math.atanh(deviation)
    with torch.no_grad():
        output = decoder(frames)[0, 0].numpy()
    assert comb_share(output, 32000) < 0.01
    spectrum = abs(librosa.stft(output[3200:-3200], n_fft=16384)).mean(1)  # 1.95 Hz bins, edges left out
    assert abs(spectrum.argmax() * 32000 / 16384 - frequency) < 2
