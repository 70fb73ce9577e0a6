"""The codec's STFT autoencoder (`encodec.autoencoder: stft`): shapes, building, export, and the property it is
for: a tone between the frame rate's multiples comes out at its own pitch."""

import math

from audiocraft.losses import MRSTFTLoss
import librosa
import pytest
import torch

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


def test_a_tone_between_frame_rate_multiples_keeps_its_pitch():
    """Fitted to a 1 s tone at 130 Hz (between the 50 Hz frame rate's multiples) from a fixed latent, the decoder
    puts its power on the tone, not on the frame-rate comb that a transposed-convolution decoder falls into."""
    torch.manual_seed(0)
    sample_rate, frequency = 32000, 130.0
    time = torch.arange(sample_rate) / sample_rate
    target = (0.3 * torch.sin(2 * math.pi * frequency * time))[None, None]
    decoder = ISTFTDecoder(8, hop_length=640, hidden=32, num_blocks=1)
    latent = torch.randn(1, 8, 50)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    loss = MRSTFTLoss()
    for _ in range(150):
        optimizer.zero_grad()
        loss(decoder(latent), target).sum().backward()
        optimizer.step()
    with torch.no_grad():
        output = decoder(latent)[0, 0].numpy()
    assert comb_share(output, sample_rate) < 0.2
    spectrum = abs(librosa.stft(output, n_fft=8192)).mean(1)
    assert abs(spectrum.argmax() * sample_rate / 8192 - frequency) < 8
