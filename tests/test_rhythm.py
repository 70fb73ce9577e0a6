"""Rhythm against cuts: scene cuts of videos with known cuts, beats of audio with known beats, the alignment
figures, moving beats onto cuts (`--sync_cuts`) through the library, infer, evaluate and `VidMuse.generate`."""

import json

import numpy as np
import pytest
import soundfile
import torch

from audiocraft_ext.evaluate import main as evaluate_main
from audiocraft_ext.infer import main as infer_main
from audiocraft_ext.media.beat_sync import NO_BEATS, NO_CUTS, SYNCED, plan_anchors, sync_to_cuts, warp
from audiocraft_ext.media.cuts import detect_cuts
from audiocraft_ext.media.rhythm import Rhythm, align, cuts_hit, matched_pairs, track_rhythm
from audiocraft_ext.media.video import VideoReadError
from audiocraft_ext.synth.rhythm import click_track, drum_pattern, irregular_shots, write_cut_video
from audiocraft_ext.synth.scenes import Scene, Shape, write_image

SR = 32000


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """A 10 s video with cuts at irregular, known times."""
    path = tmp_path_factory.mktemp("cuts") / "cuts.mp4"
    shots = [1.6, 2.28, 1.32, 3.0, 1.8]
    return path, write_cut_video(path, shots, seed=3)


def test_detect_cuts_finds_the_known_cuts_at_their_frame(cut_video, tmp_path):
    path, known = cut_video
    assert known == pytest.approx([1.6, 3.88, 5.2, 8.2])
    assert detect_cuts(path) == pytest.approx(known, abs=1e-6)
    assert detect_cuts(path, duration=5.0) == pytest.approx(known[:2], abs=1e-6)
    shots = irregular_shots(np.random.default_rng(0), 20.0, fps=25)
    assert sum(shots) == pytest.approx(20.0) and all(1.2 - 1e-9 <= s <= 3.5 for s in shots[:-1])
    assert 1.2 <= shots[-1] <= 4.7 and all(abs(s * 25 - round(s * 25)) < 1e-9 for s in shots)
    still = tmp_path / "still.mp4"
    write_cut_video(still, [4.0], seed=1)
    assert detect_cuts(still) == []
    (tmp_path / "junk.mp4").write_text("not a video")
    with pytest.raises(VideoReadError, match="junk.mp4"):
        detect_cuts(tmp_path / "junk.mp4")


@pytest.mark.parametrize("bpm", [96, 128])
def test_beats_of_a_drum_pattern_are_its_known_beats(bpm):
    duration = 12.0
    rhythm = track_rhythm(torch.from_numpy(drum_pattern(bpm, duration))[None], SR)
    truth = 0.1 + np.arange(0, duration, 60 / bpm)
    assert rhythm.tempo == pytest.approx(bpm, rel=0.04)
    # every tracked beat is on a true beat (the tracker may skip the first or last one)
    errors = np.abs(rhythm.beats[:, None] - truth[None]).min(axis=1)
    assert len(rhythm.beats) >= len(truth) - 3 and errors.max() < 0.03
    assert cuts_hit(truth[2:-2], rhythm.onsets, 0.03) == len(truth) - 4  # an onset on every hit


def test_alignment_figures_on_known_events():
    cuts = [1.0, 2.0, 3.0]
    rhythm = Rhythm(beats=np.array([1.04, 2.08, 2.11, 5.0]), onsets=np.array([0.99, 2.0, 3.2]), tempo=60.0)
    summary = align(cuts, rhythm).summary()
    assert summary["cut_beat_hit@50ms"] == pytest.approx(1 / 3)
    assert summary["cut_beat_hit@70ms"] == pytest.approx(1 / 3)
    assert summary["cut_beat_hit@100ms"] == pytest.approx(2 / 3)
    assert summary["cut_onset_hit@50ms"] == pytest.approx(2 / 3)
    assert summary["beat_iou@70ms"] == pytest.approx(1 / (3 + 4 - 1))
    assert summary["cuts"] == 3 and summary["beats"] == 4
    assert matched_pairs([1.0, 1.05], [1.03], 0.07) == 1  # one beat matches one cut only
    assert np.isnan(align([], rhythm).summary()["cut_beat_hit@70ms"])
    pooled = align(cuts, rhythm) + align([1.0], rhythm)
    assert pooled.cuts == 4 and pooled.hit_rate(0.1) == pytest.approx(3 / 4)


def test_plan_hits_the_most_cuts_within_the_tempo_bound():
    beats = np.arange(0.5, 10, 0.5)
    cuts = [2.2, 2.3, 6.1]  # 2.2 and 2.3 cannot both take a beat 0.5 s apart
    anchors = plan_anchors(beats, cuts, 10.0, max_tempo_change=0.15)
    assert [c for _, c in anchors] in ([2.2, 6.1], [2.3, 6.1])
    points = [(0.0, 0.0), *anchors, (10.0, 10.0)]
    speeds = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(points[:-1], points[1:])]
    assert max(abs(s - 1) for s in speeds) <= 0.15 + 1e-9
    assert plan_anchors(beats, [0.25], 10.0, max_tempo_change=0.15) == []  # 0.5 s beat cannot reach 0.25 s


def test_warp_moves_clicks_to_their_anchors_and_keeps_the_length():
    wav = torch.from_numpy(click_track([1.0, 2.0, 3.0, 4.0], 5.0))[None]
    out = warp(wav, SR, [(2.0, 2.2), (3.0, 3.1)])
    assert out.shape == wav.shape
    expected = [1.1, 2.2, 3.1, 3.1 + 1.0 * 1.9 / 2.0]  # the last piece plays 2 s of source in 1.9 s
    audio = out[0].numpy()
    peaks = [(np.argmax(np.abs(audio[round((t - 0.08) * SR):round((t + 0.08) * SR)])) / SR + t - 0.08)
             for t in expected]
    assert peaks == pytest.approx(expected, abs=0.012)


def test_sync_puts_beats_on_cuts_and_says_when_it_does_nothing():
    duration = 16.0
    wav = torch.from_numpy(drum_pattern(112, duration))[None]
    cuts = [1.97, 4.4, 7.33, 9.05, 12.6]
    before = align(cuts, track_rhythm(wav, SR)).hit_rate(0.07)
    synced, report = sync_to_cuts(wav, SR, cuts, max_tempo_change=0.15)
    after = align(cuts, track_rhythm(synced, SR)).hit_rate(0.07)
    assert synced.shape == wav.shape and report.status == SYNCED
    assert after >= 0.8 and after >= 2 * before and report.hits_after == round(after * len(cuts))
    assert 0 < report.largest_tempo_change <= 0.15 and len(report.anchors) >= 4
    assert json.loads(json.dumps(report.to_dict()))["cuts"] == cuts
    same, report = sync_to_cuts(wav, SR, [])
    assert same is wav and report.status == NO_CUTS
    silence = torch.zeros(1, SR * 4)
    same, report = sync_to_cuts(silence, SR, [1.5])
    assert same is silence and report.status == NO_BEATS
    with pytest.raises(ValueError, match="max_tempo_change"):
        sync_to_cuts(wav, SR, cuts, max_tempo_change=1.5)


def test_infer_sync_cuts_records_what_it_did(tiny_checkpoint, cut_video, tmp_path):
    path, known = cut_video
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "cuts.mp4").write_bytes(path.read_bytes())
    write_image(inputs / "picture.png", Scene(1.0, shapes=[Shape()]), (96, 64))
    common = ["--model_path", str(tiny_checkpoint), "--video_dir", str(inputs), "--seed", "0", "--quiet"]
    assert infer_main(common + ["--output_dir", str(tmp_path / "plain")]) == 0
    assert infer_main(common + ["--output_dir", str(tmp_path / "synced"), "--sync_cuts",
                                "--max_tempo_change", "0.1"]) == 0
    plain = json.loads((tmp_path / "plain" / "cuts.json").read_text())
    sidecar = json.loads((tmp_path / "synced" / "cuts.json").read_text())
    assert plain["cut_sync"] is None and plain["parameters"]["sync_cuts"] is False
    report = sidecar["cut_sync"]
    assert sidecar["parameters"]["sync_cuts"] is True and report["max_tempo_change"] == 0.1
    assert report["cuts"] == pytest.approx(known, abs=1e-6) and report["largest_tempo_change"] <= 0.1
    assert report["status"] in (SYNCED, NO_BEATS, "no_reachable_beat")
    lengths = {soundfile.info(str(tmp_path / run / "cuts.wav")).frames for run in ("plain", "synced")}
    assert lengths == {round(10.0 * SR)}
    assert json.loads((tmp_path / "synced" / "picture.json").read_text())["cut_sync"]["status"] == NO_CUTS
    assert infer_main(common + ["--output_dir", str(tmp_path / "bad"), "--sync_cuts", "--max_tempo_change",
                                "0"]) == 2


def test_generate_sync_cuts_is_the_synced_music(tiny_checkpoint, cut_video):
    from audiocraft_ext import VidMuse
    path, _ = cut_video
    model = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    frames = model.load_video(path, duration=4.0)
    plain = model.generate([frames], seed=1)[0]
    synced = model.generate([frames], seed=1, sync_cuts=True, max_tempo_change=0.2)[0]
    expected, report = model.beats_to_cuts(plain, frames, 0.2)
    assert synced.shape == plain.shape and torch.equal(synced, expected)
    assert report.cuts == pytest.approx([1.6, 3.88], abs=1e-6)
    with pytest.raises(ValueError, match="max_tempo_change"):
        model.generate([frames], seed=1, sync_cuts=True, max_tempo_change=-0.1)


def test_evaluate_rhythm_on_music_with_known_beats(tmp_path, capsys):
    videos, music = tmp_path / "videos", tmp_path / "music"
    videos.mkdir()
    music.mkdir()
    cuts = write_cut_video(videos / "on.mp4", [1.5, 2.0, 1.0, 2.5, 1.0], seed=5, fps=20)  # cuts on a 120 bpm grid
    assert cuts == pytest.approx([1.5, 3.5, 4.5, 7.0])
    (videos / "off.mp4").write_bytes((videos / "on.mp4").read_bytes())
    soundfile.write(str(music / "on.wav"), drum_pattern(120, 8.0, first_beat=0.0, swing_hats=False), SR)
    # the same pattern with its beats between the cuts
    soundfile.write(str(music / "off.wav"), drum_pattern(120, 8.0, first_beat=0.25, swing_hats=False), SR)
    soundfile.write(str(music / "lonely.wav"), click_track([1.0], 2.0), SR)  # no video: skipped
    out = tmp_path / "rhythm.json"
    assert evaluate_main(["--generated", str(music), "--videos", str(videos), "--rhythm", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["rhythm"]
    assert results["tracks"] == 2 and results["cuts"] == 8 and results["failed"] == 0
    assert results["per_video"] == {"on": 1.0, "off": 0.0}
    assert results["cut_beat_hit@70ms"] == results["cut_beat_hit@50ms"] == pytest.approx(0.5)
    assert results["cut_onset_hit@50ms"] >= 0.5  # the kicks on the cuts are onsets too
    assert results["beat_iou@70ms"] == pytest.approx(4 / (8 + results["beats"] - 4))
    assert "cut_beat_hit@70ms" in capsys.readouterr().out
    # without --videos, each track's sidecar names its video (as infer.sh writes it)
    (music / "on.json").write_text(json.dumps({"input": str(videos / "on.mp4")}))
    assert evaluate_main(["--generated", str(music), "--rhythm", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rhythm"]["per_video"] == {"on": 1.0}
