"""Music descriptors (onset rate, register), their prediction from the video and the conditioning on them."""

import dataclasses
import json
import math
import shutil
import typing as tp

from audiocraft.data.audio import audio_read
from audiocraft.data.audio_utils import convert_audio
from omegaconf import OmegaConf
import pytest
import soundfile
import torch

from audiocraft_ext.evaluate import main as evaluate_main
from audiocraft_ext.infer import main as infer_main
from audiocraft_ext.models.export import COMPRESSION_FILENAME, LM_FILENAME, export_compression_model, export_lm_model
from audiocraft_ext.models.lm import VIDEO_CONDITION, VideoBatch
from audiocraft_ext.models.vidmuse import VidMuse, candidate_seed
from audiocraft_ext.modules.music_descriptors import (descriptor_values, music_descriptors, readable_descriptors,
                                                      register)
from audiocraft_ext.pipeline import GenerationSettings, generate_music, prepare_input, run
from audiocraft_ext.modules.frame_statistics import (FRAME_STATISTIC_NAMES, FRAME_STATISTICS, HIGHLIGHT_STATISTICS,
                                                     PER_FRAME_NAMES, frame_statistics)
from torch.nn import functional as F
from audiocraft_ext.modules.visual import DESCRIPTOR_LIMIT, token_statistics
from audiocraft_ext.synth.attributes import music_attributes
from audiocraft_ext.synth.corpus import write_corpus
from audiocraft_ext.synth.rhythm import write_cut_video
from audiocraft_ext.synth.evaluate import effective_sampling, evaluate, predicted_descriptors

from conftest import build_tiny_lm, descriptor_model, tiny_codec_cfg

SR = 32000


def plucks(rate: float, freq: float, seconds: float = 4.0) -> torch.Tensor:
    """Decaying tones of `freq` Hz, `rate` per second: `[1, N]`."""
    t = torch.arange(int(seconds * SR)) / SR
    phase = torch.remainder(t, 1 / rate)
    return (torch.sin(2 * math.pi * freq * t) * torch.exp(-phase * 12))[None]


def test_token_statistics_grow_with_motion_and_ignore_padding_frames():
    g = torch.Generator().manual_seed(0)
    start, step = torch.randn(1, 1, 4, 8, generator=g), torch.randn(1, 1, 4, 8, generator=g)
    frames = torch.arange(5.0)[None, :, None, None]                       # [1, T, 1, 1]
    slow, fast = start + 0.1 * frames * step, start + 0.4 * frames * step   # [1, T, P, D]
    glob = torch.randn(1, 3, 4, 8, generator=g)
    stats = token_statistics(glob.expand(2, -1, -1, -1), torch.cat([slow, fast]))
    assert stats.shape == (2, 32)
    picture = torch.cat([glob.mean((1, 2)), glob.std((1, 2))], -1)[0]     # the same picture for both
    assert torch.allclose(stats[0, :16], picture) and torch.allclose(stats[1, :16], picture)
    assert torch.allclose(stats[1, 16:24] - stats[0, 16:24], torch.full((8,), math.log(4.0)), atol=0.01)
    # a padded item's frames past its length change nothing; one valid frame has no change at all
    padded = torch.cat([slow[:, :3], torch.randn(1, 2, 4, 8, generator=g)], 1)
    lengths = torch.tensor([3, 1])
    masked = token_statistics(glob.expand(2, -1, -1, -1), torch.cat([padded, padded]), lengths)
    assert torch.allclose(masked[0], token_statistics(glob, slow[:, :3])[0], atol=1e-5)
    assert torch.allclose(masked[1, 16:], torch.full((16,), math.log(1e-4)), atol=1e-4)


def test_onset_rate_counts_the_notes_and_register_finds_their_pitch():
    wav = torch.stack([plucks(1.5, 110.0), plucks(3.0, 220.0), plucks(6.0, 440.0)])  # [3, 1, N]
    rates = torch.expm1(music_descriptors(wav, SR)[:, 0])
    assert torch.allclose(rates, torch.tensor([1.5, 3.0, 6.0]), atol=0.5), rates
    assert torch.allclose(register(wav, SR), torch.log2(torch.tensor([110.0, 220.0, 440.0])), atol=0.15)


def test_evaluation_measures_music_against_the_descriptors_it_was_asked_for(tmp_path):
    # three tracks asked for what they have, one asked for an octave lower and twice as fast as it has
    tracks = [(1.5, 110.0, 1.5, 110.0), (3.0, 220.0, 3.0, 220.0), (6.0, 440.0, 6.0, 440.0), (2.0, 440.0, 4.0, 220.0)]
    for i, (rate, freq, asked_rate, asked_hz) in enumerate(tracks):
        soundfile.write(tmp_path / f"t{i}.wav", plucks(rate, freq)[0].numpy(), SR)
        (tmp_path / f"t{i}.json").write_text(json.dumps(
            {"music_descriptors": {"onset_rate": asked_rate, "register_hz": asked_hz}}))
    soundfile.write(tmp_path / "no_sidecar.wav", plucks(1.0, 220.0)[0].numpy(), SR)  # skipped
    soundfile.write(tmp_path / "silent.wav", torch.zeros(SR).numpy(), SR)  # counted apart
    (tmp_path / "silent.json").write_text(json.dumps({"music_descriptors": {"onset_rate": 2.0, "register_hz": 200.0}}))
    soundfile.write(tmp_path / "plain_model.wav", plucks(1.0, 220.0)[0].numpy(), SR)  # a model without them
    (tmp_path / "plain_model.json").write_text(json.dumps({"music_descriptors": None}))
    assert evaluate_main(["--generated", str(tmp_path), "--descriptors", "--out", str(tmp_path / "e.json")]) == 0
    figures = json.loads((tmp_path / "e.json").read_text())["descriptors"]
    assert figures["tracks"] == 4 and figures["silent"] == 1
    assert figures["onset_rate"]["asked"] == pytest.approx(14.5 / 4)
    assert figures["onset_rate"]["error"] == pytest.approx(-2 / 4, abs=0.2)  # the fourth: 2 against 4
    assert figures["register_midi"]["error"] == pytest.approx(12 / 4, abs=0.5)  # the fourth: an octave above
    assert figures["register_midi"]["abs_error"] == pytest.approx(12 / 4, abs=0.5)
    assert figures["register_midi"]["spearman"] > 0.6
    same = tmp_path / "same"  # every track asked the same: no rank correlation
    same.mkdir()
    for i, rate in enumerate((2.0, 3.0)):
        soundfile.write(same / f"t{i}.wav", plucks(rate, 220.0)[0].numpy(), SR)
        (same / f"t{i}.json").write_text(json.dumps({"music_descriptors": {"onset_rate": 2.5, "register_hz": 220.0}}))
    assert evaluate_main(["--generated", str(same), "--descriptors", "--out", str(tmp_path / "g.json")]) == 0
    figures = json.loads((tmp_path / "g.json").read_text())["descriptors"]
    assert figures["onset_rate"]["spearman"] is None and figures["onset_rate"]["abs_error"] == pytest.approx(0.5, abs=0.2)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert evaluate_main(["--generated", str(empty), "--descriptors", "--out", str(tmp_path / "f.json")]) == 2


def test_padding_past_an_items_length_is_not_counted():
    wav = plucks(4.0, 220.0)[None]
    padded = torch.cat([wav, torch.zeros_like(wav)], dim=-1)
    own = music_descriptors(wav, SR)
    assert torch.allclose(music_descriptors(padded, SR, torch.tensor([wav.shape[-1]])), own, atol=0.05)
    assert music_descriptors(padded, SR)[0, 0] < own[0, 0] - 0.3  # counted over the padding, the rate halves


def test_music_descriptors_are_predicted_and_teacher_values_replace_them(tiny_lm_cfg):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    lm = build_tiny_lm(cfg)
    encoder = lm.video_encoder
    torch.nn.init.normal_(encoder.descriptor_embedding[-1].weight)  # zero at start: the LM would not change
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 3, 2, 224, 224), generator=g, dtype=torch.uint8)
    video = VideoBatch(frames, frames)
    conditions, predicted = lm.video_condition(video)
    assert predicted.shape == (3, 2)
    assert torch.allclose(conditions["video"][0], encoder(frames, frames), atol=1e-5)  # the memory is the picture's
    embedded, mask = conditions["music_descriptors"]
    assert embedded.shape == (3, 1, lm.dim) and bool(mask.all())
    assert torch.allclose(embedded, encoder.embed_descriptors(predicted), atol=1e-5)
    assert lm.fuser.cond2fuse["music_descriptors"] == "sum"  # added to the LM's input at every step

    music = torch.tensor([[1.2, 8.0], [float("nan")] * 2, [2.0, 9.0]])  # the middle item keeps its prediction
    taught = lm.video_condition(VideoBatch(frames, frames, music_descriptors=music))[0]["music_descriptors"][0]
    used = torch.cat([encoder.normalize_descriptors(music[:1]), predicted[1:2],
                      encoder.normalize_descriptors(music[2:])])
    assert torch.allclose(taught, encoder.embed_descriptors(used), atol=1e-5)
    assert not torch.allclose(taught[0], embedded[0], atol=1e-3)
    assert torch.allclose(taught[1], embedded[1], atol=1e-5)

    # the descriptors change every step's logits, whatever the memory holds
    codes = torch.randint(0, cfg.transformer_lm.card, (1, cfg.transformer_lm.n_q, 6), generator=g)
    low, high = ({"video": conditions["video"][0][:1], "music_descriptors": encoder.embed_descriptors(
        torch.full((1, 2), value))} for value in (-1.0, 1.0))
    logits = [lm.compute_predictions(codes, [], {k: (v, torch.ones(v.shape[:2], dtype=torch.bool))
                                                 for k, v in c.items()}).logits for c in (low, high)]
    assert not torch.allclose(logits[0][:, 0, 0], logits[1][:, 0, 0], atol=1e-4)
    mean, std = torch.tensor(cfg.video.visual.descriptor_mean), torch.tensor(cfg.video.visual.descriptor_std)
    assert torch.allclose(encoder.normalize_descriptors(mean + std), torch.ones(2))

    # the head is fitted, not learnt: no gradient reaches it, and black frames ask for no extremes
    assert not any(p.requires_grad for p in encoder.descriptor_head.parameters())
    black = torch.zeros_like(frames[:1])
    null = lm.video_condition(VideoBatch(black, black))[1]
    assert null.abs().max() <= DESCRIPTOR_LIMIT
    assert torch.allclose(encoder.normalize_descriptors(encoder.null_descriptors()[None]), null, atol=1e-5)

    # given descriptors need no prediction; CLIP tokens alone cannot give one (the read-out reads pixels too)
    tokens = encoder.tokens(frames)
    assert lm.video_condition(VideoBatch(tokens, tokens, music_descriptors=music[[0, 2, 0]]))[1] is None
    with pytest.raises(ValueError, match="cannot be predicted"):
        lm.video_condition(VideoBatch(tokens, tokens, music_descriptors=music))


def test_frame_statistics_follow_brightness_and_flicker_and_ignore_padding_frames():
    g = torch.Generator().manual_seed(3)
    base = torch.rand(1, 3, 1, 32, 48, generator=g).expand(-1, -1, 4, -1, -1)
    dim, bright = ((base * level * 255).to(torch.uint8) for level in (0.4, 0.9))
    stats = frame_statistics(torch.cat([dim, bright]))
    assert stats.shape == (2, FRAME_STATISTICS)
    for index, name in enumerate(PER_FRAME_NAMES):  # the same colours, brighter: all but the saturation grow
        assert (stats[1, index] - stats[0, index] > 0.01) == (name != "saturation"), name
    change = FRAME_STATISTIC_NAMES.index("luma_change")
    assert float(stats[0, change]) < 1e-6 and float(stats[0, -1]) == 0  # the same picture four times: no change
    flicker = torch.cat([dim[:, :, :2], bright[:, :, :2]], dim=2)
    assert float(frame_statistics(flicker)[0, change]) > 0.05
    padded = torch.cat([bright[:, :, :2], torch.zeros_like(bright[:, :, :3])], dim=2)
    assert torch.allclose(frame_statistics(padded, torch.tensor([2])), frame_statistics(bright[:, :, :2]), atol=1e-5)


def test_motion_measures_how_far_the_picture_moves_whatever_its_contrast():
    g = torch.Generator().manual_seed(5)
    blobs = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(224, 224), mode="bicubic").clamp(0, 1)

    def panned(picture: torch.Tensor, step: int) -> torch.Tensor:  # 6 frames, `step` pixels to the right each
        frames = torch.stack([picture.roll(step * t, dims=-1) for t in range(6)], dim=2)
        return (frames * 255).to(torch.uint8)
    motion = FRAME_STATISTIC_NAMES.index("motion")
    sharp = [float(frame_statistics(panned(blobs, step))[0, motion]) for step in (0, 7, 14, 21)]
    assert sharp[0] == 0
    for step, measured in zip((7, 14, 21), sharp[1:]):
        assert measured == pytest.approx(step / 224, rel=0.25), (step, sharp)
    # the same motion in a dim, flat version of the picture (a look of another contrast) reads the same
    dim = [float(frame_statistics(panned(0.2 + 0.3 * blobs, step))[0, motion]) for step in (7, 14, 21)]
    assert dim == pytest.approx(sharp[1:], rel=0.15)
    # a cut between two frames (another picture) does not count: the median over the frame pairs
    cut = panned(blobs, 14)
    cut[:, :, 3:] = panned(blobs.flip(-2), 14)[:, :, :3]
    assert float(frame_statistics(cut)[0, motion]) == pytest.approx(sharp[2], rel=0.15)


def test_the_fitted_head_reads_the_descriptors_back_on_their_own_spread(tiny_lm_cfg):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    lm = build_tiny_lm(cfg)
    encoder = lm.video_encoder
    assert not encoder.descriptor_head_fitted
    g = torch.Generator().manual_seed(1)
    width = encoder.descriptor_head[-1].in_features
    statistics = 3 + 2 * torch.randn(400, width, generator=g)
    signal = (statistics[:, [-1, 0]] - 3) / 2  # [N, 2] unit scale: onsets from the motion, register from a token's
    unit = 0.9 * signal + 0.3 * torch.randn(400, 2, generator=g)
    mean, std = torch.tensor(cfg.video.visual.descriptor_mean), torch.tensor(cfg.video.visual.descriptor_std)
    fit = encoder.fit_descriptor_head(statistics[:300], mean + std * unit[:300])
    assert encoder.descriptor_head_fitted and fit.clips == 300
    assert all(c > 0.8 for c in fit.correlation) and all(f >= 1 for f in fit.spread_factor)
    assert fit.inputs == ["motion", "tokens"], fit  # the fewest inputs that read each one as well as all do
    lm.train()  # a fitted head keeps its fitting statistics in training
    predicted = encoder.descriptor_head(statistics[300:])
    for c in range(2):
        assert torch.corrcoef(torch.stack([predicted[:, c], unit[300:, c]]))[0, 1] > 0.85
        spread = float(unit[300:, c].std())
        assert float(predicted[:, c].std()) == pytest.approx(spread, rel=0.2)  # not shrunk towards the mean
    # a descriptor the statistics do not tell is predicted as its mean
    noise = encoder.fit_descriptor_head(statistics[:300], mean + std * torch.randn(300, 2, generator=g))
    assert noise.spread_factor == [0.0, 0.0], noise
    assert torch.allclose(encoder.descriptor_head(statistics[300:]), encoder.descriptor_head[-1].bias.expand(100, 2))
    with pytest.raises(ValueError, match="at least 3 clips"):
        encoder.fit_descriptor_head(statistics[:2], mean + std * unit[:2])


def shifted_and_steady_readings(width: int, seed: int, identifying: slice, shifted: int, steady: int
                                ) -> tp.Tuple[torch.Tensor, torch.Tensor, tp.List[str]]:
    """Statistics `[400, width]` of clips from four domains, the music's signal `[400]` and the domains: the
    `identifying` columns tell the domain, the `shifted` column reads the signal closely once its domain's own
    shift is known (but not in a domain it has not seen), the `steady` column reads it less closely everywhere."""
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(400) % 4
    shifts, signal = 2 * torch.randn(4, generator=g), torch.randn(400, generator=g)
    statistics = torch.randn(400, width, generator=g)
    count = len(range(width)[identifying])
    statistics[:, identifying] = torch.randn(4, count, generator=g)[index] + 0.05 * torch.randn(400, count, generator=g)
    statistics[:, shifted] = signal + shifts[index]
    statistics[:, steady] = signal + 0.5 * torch.randn(400, generator=g)
    return statistics, signal, [f"look{k}" for k in index.tolist()]


def test_folds_that_hold_out_a_domain_choose_the_read_out_that_carries_to_a_new_one(tiny_lm_cfg):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    encoder = build_tiny_lm(cfg).video_encoder
    width = encoder.descriptor_head[-1].in_features
    # a token statistic shifts with the domain, the luma's change (a pixel statistic) does not
    change = width - FRAME_STATISTICS + FRAME_STATISTIC_NAMES.index("luma_change")
    statistics, signal, domains = shifted_and_steady_readings(width, 2, slice(0, width - FRAME_STATISTICS), 0, change)
    mean, std = torch.tensor(cfg.video.visual.descriptor_mean), torch.tensor(cfg.video.visual.descriptor_std)
    descriptors = mean + std * torch.stack([signal, signal], dim=1)
    within = encoder.fit_descriptor_head(statistics, descriptors)
    assert within.folds == 5 and within.inputs == ["tokens", "tokens"]
    across = encoder.fit_descriptor_head(statistics, descriptors, domains=domains)
    assert across.folds == 4 and across.inputs == ["pixels", "pixels"]


def test_a_look_that_shifts_the_pixel_levels_leaves_the_highlights_read_out(tiny_lm_cfg):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    encoder = build_tiny_lm(cfg).video_encoder
    width = encoder.descriptor_head[-1].in_features
    # the luma's mean shifts with the look, the highlights' level does not
    highlight = width - FRAME_STATISTICS + FRAME_STATISTIC_NAMES.index(HIGHLIGHT_STATISTICS[0])
    statistics, signal, domains = shifted_and_steady_readings(width, 3, slice(width - FRAME_STATISTICS, None),
                                                              width - FRAME_STATISTICS, highlight)
    mean, std = torch.tensor(cfg.video.visual.descriptor_mean), torch.tensor(cfg.video.visual.descriptor_std)
    descriptors = mean + std * torch.stack([signal, signal], dim=1)
    assert encoder.fit_descriptor_head(statistics, descriptors).inputs == ["pixels", "pixels"]
    across = encoder.fit_descriptor_head(statistics, descriptors, domains=domains)
    assert across.inputs == ["highlights", "highlights"] and min(across.correlation) > 0.8, across
    weights = encoder.descriptor_head[-1].weight
    assert torch.count_nonzero(weights, dim=1).tolist() == [len(HIGHLIGHT_STATISTICS)] * 2
    # a prior where the folds cannot tell: the register's inputs narrowed by name
    narrowed = encoder.fit_descriptor_head(statistics, descriptors, candidate_inputs={"register": ["highlights"]})
    assert narrowed.inputs == ["pixels", "highlights"], narrowed
    for wrong in ({"tempo": ["pixels"]}, {"register": ["edges"]}, {"register": []}):
        with pytest.raises(ValueError, match="candidate inputs"):
            encoder.fit_descriptor_head(statistics, descriptors, candidate_inputs=wrong)


def test_an_exported_model_predicts_its_descriptors_from_a_video(tmp_path, tiny_lm_cfg, tiny_codec, pairs):
    cfg = tiny_lm_cfg.copy()
    cfg.video.visual.music_descriptors = True
    lm = build_tiny_lm(cfg)
    export_lm_model(lm, cfg, tmp_path / LM_FILENAME)
    export_compression_model(tiny_codec, tiny_codec_cfg(), tmp_path / COMPRESSION_FILENAME)
    model = VidMuse.get_pretrained(tmp_path, device="cpu")
    for key, value in lm.state_dict().items():  # the head and the embedding load with the rest
        assert torch.equal(model.lm.state_dict()[key], value), key
    frames = model.load_video(pairs / "pair0.mp4")
    predicted = predicted_descriptors(model, frames)
    whole = VideoBatch(frames.local_frames[None], frames.global_frames[None])
    assert predicted == pytest.approx(lm.video_condition(whole)[1][0].tolist(), abs=1e-5)
    # a window carries the whole video's descriptors, not its own frames': frames after it change them
    window = model.window_batch([frames], [(0, 2)])
    assert torch.allclose(window.music_descriptors, model.predict_music_descriptors([frames]))
    changed = frames.local_frames.clone()
    changed[:, 2:] = 255 - changed[:, 2:]
    moved = model.window_batch([dataclasses.replace(frames, local_frames=changed)], [(0, 2)])
    assert not torch.allclose(window.music_descriptors, moved.music_descriptors)
    conditions, predicted = lm.video_condition(window, with_null=True)
    assert torch.equal(conditions[VIDEO_CONDITION][0], lm.video_condition(moved, with_null=True)[0][VIDEO_CONDITION][0])
    # the null half has no given descriptors: the model's own for black frames, whatever the video
    null = lm.video_encoder.normalize_descriptors(lm.video_encoder.null_descriptors()[None])
    assert torch.allclose(predicted[1], null[0], atol=1e-3)  # batched with another video: float round-off


def test_generation_follows_descriptors_given_by_hand(tmp_path, tiny_lm_cfg, tiny_codec, tiny_checkpoint, pairs):
    model = descriptor_model(tmp_path, tiny_lm_cfg, tiny_codec)
    frames = model.load_video(pairs / "pair0.mp4", duration=1.0)
    own = model.generate([frames], seed=0)[0]
    # the descriptors the model predicts, given by hand, are what it conditions on anyway
    assert torch.equal(model.generate([frames], seed=0, music_descriptors=model.predict_music_descriptors([frames]))[0],
                       own)
    fast_and_high = torch.tensor([[math.log1p(8.0), 9.5]])
    fast = model.generate([frames, frames], seed=0, music_descriptors=torch.cat([fast_and_high, fast_and_high]))[0]
    assert not torch.equal(fast, own)
    # a row of NaN takes the predicted descriptors, the other rows stay as given
    mixed = model.generate([frames, frames], seed=0, music_descriptors=torch.tensor([[math.nan] * 2, [1.0, 8.0]]))
    assert torch.equal(mixed[0], own) and not torch.equal(mixed[1], own)
    with pytest.raises(ValueError, match=r"must be \[1, 2\]"):
        model.generate([frames], seed=0, music_descriptors=torch.zeros(2, 2))
    without = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="built without music descriptors"):
        without.generate([without.load_video(pairs / "pair0.mp4", duration=1.0)], music_descriptors=fast_and_high)
    # the evaluation's upper bound: each clip generated with its reference music's descriptors
    write_corpus(tmp_path / "corpus", count=1, seed=1000, duration=2.0, progress=False)
    results = evaluate(model, tmp_path / "corpus", reference_descriptors=True)
    row = results["clips"][0]
    wav, sr = audio_read(row["path"])
    given = music_descriptors(convert_audio(wav, sr, SR, 1)[None], SR)
    music = model.generate([model.load_video(row["video_path"])], seed=0, music_descriptors=given)[0]
    assert results["summary"]["descriptors"] == "reference"
    assert row["generated"] == music_attributes(music[0].numpy(), SR)
    with pytest.raises(ValueError, match="built with music descriptors"):
        evaluate(without, tmp_path / "corpus", reference_descriptors=True)


def test_double_guidance_weighs_the_picture_beyond_the_descriptors(tmp_path, tiny_lm_cfg, tiny_codec, tiny_checkpoint,
                                                                   pairs):
    model = descriptor_model(tmp_path, tiny_lm_cfg, tiny_codec,
                             **{"classifier_free_guidance.inference_coef_beta": 0.5})
    assert model.lm.cfg_coef_beta == 0.5  # the model's default, from its config, recorded as used by evaluations
    assert model.generation_params["cfg_coef_beta"] is None and effective_sampling(model)["cfg_coef_beta"] == 0.5
    frames = model.load_video(pairs / "pair0.mp4", duration=1.0)
    descriptors = model.predict_music_descriptors([frames])
    default = model.generate([frames], seed=0)[0]

    def generate(beta: tp.Optional[float], video=frames) -> torch.Tensor:
        model.set_generation_params(cfg_coef_beta=beta)
        return model.generate([video], seed=0, music_descriptors=descriptors)[0]

    assert torch.equal(generate(0.5), default)
    # beta 0: the descriptors alone, as a black video that keeps them; beta 1: plain guidance on the whole condition
    black = dataclasses.replace(frames, local_frames=torch.zeros_like(frames.local_frames),
                                global_frames=torch.zeros_like(frames.global_frames))
    model.lm.cfg_coef_beta = None
    plain, blind = generate(None), generate(None, black)
    assert torch.equal(generate(0.0), blind)
    assert torch.equal(generate(1.0), plain)
    assert not torch.equal(default, plain) and not torch.equal(default, blind)
    # the descriptors-only branch is the null video with the batch's descriptors, and needs them
    video = model.window_batch([frames], [(0, 2)], descriptors)
    branches = video.guidance_batch(video.null(), descriptor_branch=True)
    assert len(branches) == 3 and not branches.local_frames[1:].any()
    assert torch.equal(branches.music_descriptors[1], descriptors[0]) and branches.music_descriptors[2].isnan().all()
    with pytest.raises(ValueError, match="needs the batch's music descriptors"):
        VideoBatch(video.local_frames, video.global_frames).guidance_batch(video.null(), descriptor_branch=True)
    with pytest.raises(ValueError, match=">= 0"):
        model.set_generation_params(cfg_coef_beta=-0.5)
    without = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="needs a model built with music descriptors"):
        without.set_generation_params(cfg_coef_beta=0.5)
    with pytest.raises(ValueError, match="needs a model built with music descriptors"):
        without.lm.generate(video=video, max_gen_len=4, cfg_coef_beta=0.5)


def test_nearest_draw_weighs_each_descriptor_by_its_spread(tmp_path, tiny_lm_cfg, tiny_codec):
    model = descriptor_model(tmp_path, tiny_lm_cfg, tiny_codec)
    slow_low, fast_high = plucks(2.0, 220.0), plucks(6.0, 660.0)
    measured = music_descriptors(torch.stack([slow_low, fast_high]), SR)
    target = torch.stack([measured[1, 0], measured[0, 1]])  # the fast draw's onset rate, the slow draw's register
    config = model.lm.visual_config
    config.descriptor_std = [0.01, 100.0]  # the onset rate decides
    assert model.nearest_draw([slow_low, fast_high], target) == 1
    config.descriptor_std = [100.0, 0.01]  # the register decides
    assert model.nearest_draw([slow_low, fast_high], target) == 0
    assert model.nearest_draw([fast_high, slow_low], target) == 1


def test_reranking_keeps_the_draw_whose_descriptors_are_nearest(tmp_path, tiny_lm_cfg, tiny_codec, tiny_checkpoint,
                                                                 pairs):
    folder = tmp_path / "model"
    model = descriptor_model(folder, tiny_lm_cfg, tiny_codec, **{"music_descriptors.rerank_candidates": 3})
    assert model.rerank_candidates == 3 and effective_sampling(model)["rerank_candidates"] == 3  # the model's own
    videos = [model.load_video(pairs / f"pair{i}.mp4", duration=1.0) for i in (0, 1)]
    wanted = torch.tensor([[math.log1p(4.0), 8.5], [math.log1p(1.5), 7.0]])
    kept_audio, kept_tokens = model.generate(videos, seed=[5, 6], music_descriptors=wanted, return_tokens=True)
    model.set_generation_params(rerank_candidates=1)
    kept = []
    for video, seed, target, audio, tokens in zip(videos, (5, 6), wanted, kept_audio, kept_tokens):
        draws, codes = model.generate([video] * 3, seed=[candidate_seed(seed, k) for k in range(3)],
                                      music_descriptors=target.expand(3, -1), return_tokens=True)
        assert torch.equal(codes[0], model.generate([video], seed=seed, music_descriptors=target[None],
                                                    return_tokens=True)[1][0])  # draw 0 is the plain draw
        assert not torch.equal(codes[0], codes[1]) and not torch.equal(codes[1], codes[2])
        kept.append(model.nearest_draw(draws, target))
        assert torch.equal(tokens, codes[kept[-1]])
        torch.testing.assert_close(audio, draws[kept[-1]])
    assert kept != [0, 0]  # a plain draw would not pass
    with pytest.raises(ValueError, match=">= 1"):
        model.set_generation_params(rerank_candidates=0)
    with pytest.raises(ValueError, match="integer"):
        model.set_generation_params(rerank_candidates=2.0)
    without = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    assert without.rerank_candidates == 1
    with pytest.raises(ValueError, match="needs a model built with music descriptors"):
        without.set_generation_params(rerank_candidates=2)
    cfg = tiny_lm_cfg.copy()  # a run configured so fails as it builds its LM, not when its export is loaded
    OmegaConf.update(cfg, "music_descriptors.rerank_candidates", 2, force_add=True)
    with pytest.raises(ValueError, match="needs a model built with music descriptors"):
        build_tiny_lm(cfg)
    # shell inference: the model's own count, recorded; a model without descriptors refuses a count before any output
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(pairs / "pair0.mp4", inputs)
    args = ["--video_dir", str(inputs), "--max_duration", "1", "--seed", "5", "--quiet"]
    assert infer_main(["--model_path", str(folder), "--output_dir", str(tmp_path / "a"), *args]) == 0
    assert json.loads((tmp_path / "a" / "pair0.json").read_text())["parameters"]["rerank_candidates"] == 3
    assert infer_main(["--model_path", str(tiny_checkpoint), "--output_dir", str(tmp_path / "b"), *args,
                       "--rerank_candidates", "2"]) == 2
    assert not list((tmp_path / "b").glob("*"))


def test_reranked_draws_take_their_own_videos_cuts(tmp_path, tiny_lm_cfg, tiny_codec):
    model = descriptor_model(tmp_path / "model", tiny_lm_cfg, tiny_codec, **{"music_descriptors.rerank_candidates": 3})
    videos = []
    for name, shots in (("early", [1.0, 1.5, 2.0]), ("late", [2.6, 1.9])):
        write_cut_video(tmp_path / f"{name}.mp4", shots, seed=len(shots), fps=20)
        videos.append(model.load_video(tmp_path / f"{name}.mp4", duration=4.0))
    kept = model.generate(videos, seed=[3, 4])
    synced = model.generate(videos, seed=[3, 4], sync_cuts=True, max_tempo_change=0.2)
    reports = []
    for music, video, wav in zip(kept, videos, synced):
        expected, report = model.beats_to_cuts(music, video, 0.2)
        assert torch.equal(wav, expected)  # the kept draw, moved onto its own video's cuts
        reports.append(report)
    assert reports[0].cuts == pytest.approx([1.0, 2.5], abs=1e-6)
    assert reports[1].cuts == pytest.approx([2.6], abs=1e-6)


def test_descriptors_in_readable_units():
    values = descriptor_values(onset_rate=3.0, register_hz=220.0)
    torch.testing.assert_close(values, torch.tensor([math.log1p(3.0), math.log2(220.0)]))
    assert readable_descriptors(values) == pytest.approx({"onset_rate": 3.0, "register_hz": 220.0})
    assert descriptor_values(register_hz=100.0)[0].isnan() and descriptor_values()[1].isnan()
    for bad, match in (({"onset_rate": -1.0}, "onset_rate must be in"), ({"register_hz": 20.0}, "register_hz must be"),
                       ({"register_hz": 5000.0}, "register_hz must be")):
        with pytest.raises(ValueError, match=match):
            descriptor_values(**bad)
        with pytest.raises(ValueError, match=match):
            GenerationSettings(**bad)


def test_onset_rate_and_register_set_by_hand(tmp_path, tiny_lm_cfg, tiny_codec, tiny_checkpoint, pairs):
    folder = tmp_path / "model"
    model = descriptor_model(folder, tiny_lm_cfg, tiny_codec)
    settings = GenerationSettings(max_duration=1.0, onset_rate=8.0)  # the read one is ~3
    item = prepare_input(model, pairs / "pair0.mp4", settings)
    read = model.predict_music_descriptors([item.frames])
    music = generate_music(model, [item], settings, seed=4)[0]
    # the rate set, the register read from the picture, and the music conditioned on exactly these
    asked = torch.tensor([[math.log1p(8.0), float(read[0, 1])]])
    assert music.descriptors == pytest.approx(readable_descriptors(asked[0]))
    assert torch.equal(music.wav, model.generate([item.frames], seed=4, music_descriptors=asked)[0])
    assert not torch.equal(music.wav, generate_music(model, [item], GenerationSettings(max_duration=1.0), seed=4)[0].wav)
    # generate itself fills a row's missing values from the picture, and leaves the caller's tensor as it was
    partial = torch.tensor([[math.log1p(8.0), math.nan]])
    assert torch.equal(model.generate([item.frames], seed=4, music_descriptors=partial)[0], music.wav)
    assert partial[0, 1].isnan()
    # the model's own range: what it reads from pictures, and so what it was trained on
    low, high = (readable_descriptors(v) for v in model.lm.video_encoder.descriptor_range())
    assert low["onset_rate"] < 3 < high["onset_rate"] and low["register_hz"] < 200 < high["register_hz"]
    GenerationSettings(onset_rate=high["onset_rate"] * 0.99).check_for(model)
    with pytest.raises(ValueError, match="this model reads .* onsets per second"):
        GenerationSettings(onset_rate=min(high["onset_rate"] * 1.1, 20.0)).check_for(model)
    with pytest.raises(ValueError, match="this model reads"):
        GenerationSettings(register_hz=max(low["register_hz"] * 0.9, 50.0)).check_for(model)
    # shell inference records them; a model without descriptors refuses them before any output
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(pairs / "pair0.mp4", inputs)
    args = ["--video_dir", str(inputs), "--max_duration", "1", "--seed", "4", "--quiet", "--register_hz", "300"]
    assert infer_main(["--model_path", str(folder), "--output_dir", str(tmp_path / "a"), *args]) == 0
    sidecar = json.loads((tmp_path / "a" / "pair0.json").read_text())
    assert sidecar["parameters"]["register_hz"] == 300.0 and sidecar["music_descriptors"]["register_hz"] == (
        pytest.approx(300.0))
    assert sidecar["music_descriptors"]["onset_rate"] == pytest.approx(readable_descriptors(read[0])["onset_rate"])
    assert infer_main(["--model_path", str(tiny_checkpoint), "--output_dir", str(tmp_path / "b"), *args]) == 2
    assert not list((tmp_path / "b").glob("*"))
    with pytest.raises(ValueError, match="need a model built with music descriptors"):  # so does the Python API
        run(VidMuse.get_pretrained(tiny_checkpoint, device="cpu"), [], tmp_path / "c", settings)
    assert not (tmp_path / "c").exists()
