"""Music recommendation: ranking, token cache, the likelihood score, CLI output."""

import json
import os

import numpy as np
import pytest
import soundfile
import torch

from audiocraft_ext.models.lm import VideoBatch
from audiocraft_ext.models.scoring import TOKEN_CACHE_FOLDER, TrackTokenCache, mean_log_likelihood, score_tracks
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.recommend import load_query, main, recommend
from audiocraft_ext.synth.scenes import Scene, Shape, write_image

from media import write_video


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return VidMuse.get_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture()
def library(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    t = np.arange(3 * 32000) / 32000
    soundfile.write(str(folder / "low.wav"), 0.3 * np.sin(2 * np.pi * 110 * t), 32000)
    soundfile.write(str(folder / "high.flac"), 0.3 * np.sin(2 * np.pi * 880 * t), 32000)
    soundfile.write(str(folder / "short.wav"), np.random.default_rng(0).normal(0, 0.1, 16000), 32000)
    (folder / "broken.wav").write_bytes(b"RIFF nonsense")
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_ranking_is_sorted_and_skips_unreadable_tracks(model, library, tmp_path):
    video = write_video(tmp_path / "v.mp4", 40, 10)
    frames = load_query(model, video, None, 2.0)
    ranking = recommend(model, library, frames, window=2.0)
    assert sorted(item["path"].rsplit("/", 1)[1] for item in ranking) == ["high.flac", "low.wav", "short.wav"]
    scores = [item["score"] for item in ranking]
    assert scores == sorted(scores, reverse=True) and all(np.isfinite(scores))
    assert len(list((library / TOKEN_CACHE_FOLDER).glob("*.pt"))) == 3


def test_score_is_conditional_minus_null_log_likelihood(model, library, tmp_path):
    frames = load_query(model, write_video(tmp_path / "v.mp4", 40, 10), None, 2.0)
    tokens = TrackTokenCache(model, tmp_path / "cache").tokens(library / "low.wav")
    codes = tokens[None, :, :100]
    video = VideoBatch(frames.local_window(0, 4)[None], frames.global_frames[None])  # 100 tokens = 2 s = 4 frames
    expected = (mean_log_likelihood(model, codes, model.lm.compute_video_condition(video))
                - mean_log_likelihood(model, codes, model.lm.compute_video_condition(video.null())))
    assert score_tracks(model, frames, [tokens], window=2.0, codebooks=None)[0] == pytest.approx(
        float(expected), abs=1e-5)

    def first_codebook(video):  # the default score reads the first codebook only
        out = model.lm.compute_predictions(codes.long(), [], condition_tensors=model.lm.compute_video_condition(video))
        log_probs = out.logits[:, 0].log_softmax(-1).gather(-1, codes[:, 0].long()[..., None])[..., 0]
        return log_probs[out.mask[:, 0]].mean()
    assert score_tracks(model, frames, [tokens], window=2.0)[0] == pytest.approx(
        float(first_codebook(video) - first_codebook(video.null())), abs=1e-5)
    # beyond the model's window: consecutive chunks, each with the frames of its span, averaged
    one_second = VidMuse("1s-window", model.compression_model, model.lm, max_duration=1.0)
    chunk_scores = []
    for start in (0, 50):
        chunk = VideoBatch(frames.local_window(start // 25, 2)[None], frames.global_frames[None])
        chunk_codes = tokens[None, :, start:start + 50]
        chunk_scores.append(mean_log_likelihood(one_second, chunk_codes, model.lm.compute_video_condition(chunk))
                            - mean_log_likelihood(one_second, chunk_codes,
                                                  model.lm.compute_video_condition(chunk.null())))
    assert score_tracks(one_second, frames, [tokens], window=2.0, codebooks=None)[0] == pytest.approx(
        float(sum(chunk_scores)) / 2, abs=1e-5)
    many = [tokens, tokens[:, :60], tokens]
    assert score_tracks(model, frames, many, window=2.0, batch_size=1) == pytest.approx(
        score_tracks(model, frames, many, window=2.0, batch_size=8), abs=1e-5)


def test_token_cache_refreshes_changed_files(model, library, tmp_path):
    cache = TrackTokenCache(model, tmp_path / "cache")
    first = cache.tokens(library / "low.wav")
    assert torch.equal(cache.tokens(library / "low.wav"), first)
    soundfile.write(str(library / "low.wav"), np.zeros(32000), 32000)
    os.utime(library / "low.wav", ns=(1, 1))
    assert cache.tokens(library / "low.wav").shape[-1] == 50  # re-encoded: now 1 s long


def test_cli_json_output(tiny_checkpoint, library, tmp_path, capsys):
    image = write_image(tmp_path / "p.png", Scene(1.0, shapes=[Shape()]), (64, 48))
    assert main(["--library", str(library), "--image", str(image), "--model_path", str(tiny_checkpoint),
                 "--json", "--top", "2", "--window", "1.5"]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert len(ranking) == 2 and set(ranking[0]) == {"path", "score"}
    assert main(["--library", str(tmp_path / "nope"), "--image", str(image)]) == 2
