"""The synthetic corpus: deterministic, its music (FluidSynth) follows its rules, its looks make valid videos, the
held-out look stays out of training corpora, and the evaluation runs end to end."""

import colorsys
from dataclasses import replace
import hashlib
import json
from pathlib import Path
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile

from audiocraft_ext.data.video_dataset import load_video_audio_meta
from audiocraft_ext.media.video import probe_video
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.synth import corpus
from audiocraft_ext.synth.attributes import comb_share, music_attributes, spearman
from audiocraft_ext.synth.corpus import (HELD_OUT_LOOKS, LOOKS, PROGRESSION, SPEED_RANGE, TRAIN_LOOKS,
                                         VARIANT_SPEED_SHIFT, ZOOM_PER_SPEED, ClipSpec, chord_variants, sample_spec,
                                         scenes_for, score_for, spec_from_row, synthesize, video_format, write_clip,
                                         write_corpus)
from audiocraft_ext.synth.evaluate import evaluate, format_summary, main as synth_evaluate_main
from audiocraft_ext.synth.music import DRUM_CHANNEL, MusicRenderError, Note, find_soundfont, render_notes
from audiocraft_ext.synth.scenes import LIGHTINGS, Scene, Shape, render


def test_specs_and_music_are_deterministic():
    assert sample_spec(5) == sample_spec(5) and sample_spec(5) != sample_spec(6)
    assert (synthesize(sample_spec(5, 2.0)) == synthesize(sample_spec(5, 2.0))).all()


def test_comb_share_tells_a_frame_periodic_buzz_from_notes():
    t = np.arange(32000 * 4) / 32000
    notes = sum(np.sin(2 * np.pi * 171.0 * k * t) / k for k in (1, 2, 3))  # partials 21, 8, 13 Hz off the comb
    frame_periodic = np.tile(np.random.default_rng(0).standard_normal(640), 200)  # repeats every 640 samples
    assert comb_share(notes, 32000) < 0.05
    assert comb_share(frame_periodic, 32000) > 0.9
    assert comb_share(np.zeros(32000), 32000) == 0.0


def test_music_has_the_clip_length_and_does_not_depend_on_the_look():
    spec = sample_spec(9, 2.5)
    audio = synthesize(spec)
    assert audio.shape == (80000,) and audio.dtype == np.float32 and 0.7 < np.abs(audio).max() <= 0.8
    assert (synthesize(replace(spec, look="landscape")) == audio).all()
    assert [(s.brightness, s.speed, s.cuts) for s in (sample_spec(9, 2.5, ("flat",)), sample_spec(9, 2.5, ("bokeh",)))
            ] == [(spec.brightness, spec.speed, spec.cuts)] * 2


def test_fluidsynth_plays_the_note_asked_for():
    # a held piano A4 (440 Hz): the rendered audio's pitch is A4, and the note sounds only after its start (before
    # it: silence but for the effects' rounding, no dither)
    audio = render_notes([Note(0.5, 1.0, 69, 100, 0)], {0: 0}, 2.0, 32000)
    assert audio.shape == (64000,) and np.abs(audio[:15000]).max() < 1e-6 and np.abs(audio[17000:40000]).max() > 0.05
    assert abs(music_attributes(audio, 32000)["pitch"] - 69) < 0.5


def test_music_is_the_same_in_every_process():
    # FluidSynth's 16-bit dither came from C's rand() as first drawn in the process: another process whose rand()
    # was seeded otherwise rendered other samples. pyfluidsynth prints where it found the library when CI is set,
    # so the digest is the last line
    render = ("import ctypes, ctypes.util, hashlib; ctypes.CDLL(ctypes.util.find_library('c')).srand({seed}); "
              "from audiocraft_ext.synth.corpus import sample_spec, synthesize; "
              "print(hashlib.sha256(synthesize(sample_spec(4, 2.0)).tobytes()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", render.format(seed=seed)], check=True, capture_output=True,
                              text=True).stdout.splitlines()[-1] for seed in (1, 987)}
    assert digests == {hashlib.sha256(synthesize(sample_spec(4, 2.0)).tobytes()).hexdigest()}


def test_a_missing_soundfont_is_a_clear_error():
    with pytest.raises(MusicRenderError, match="make corpus-deps"):
        find_soundfont("/nonexistent/GM.sf2")


def test_reference_music_follows_the_rules():
    # the same clip, darker and brighter, slower and faster: register and onset rate move with them
    for seed in (1, 2, 3):
        spec = sample_spec(seed, 4.0)
        dark, bright = (music_attributes(synthesize(replace(spec, brightness=b)), 32000) for b in (0.4, 1.1))
        assert bright["pitch"] > dark["pitch"] + 8, (seed, dark, bright)
        slow, fast = (music_attributes(synthesize(replace(spec, speed=v)), 32000) for v in (0.06, 0.42))
        assert fast["onset_rate"] > 2 * slow["onset_rate"], (seed, slow, fast)
    specs = [sample_spec(seed, 4.0) for seed in range(12)]
    measured = [music_attributes(synthesize(spec), 32000) for spec in specs]
    assert spearman([s.brightness for s in specs], [m["pitch"] for m in measured]) > 0.6
    assert spearman([s.speed for s in specs], [m["onset_rate"] for m in measured]) > 0.8


def test_score_cuts_change_the_chord_and_drums_follow_the_motion():
    spec = ClipSpec(0, 6.0, 0.8, 0.2, cuts=[2.5], chords=[0, 3])
    notes = score_for(spec)
    pads = [n for n in notes if n.channel == corpus.PAD]
    assert {(n.start, n.pitch - round(spec.base_note)) for n in pads} == {
        (0.0, c) for c in PROGRESSION[0]} | {(2.5, c) for c in PROGRESSION[3]}
    assert any(n.channel == DRUM_CHANNEL and n.pitch == corpus.CRASH and n.start == 2.5 for n in notes)
    drum_rates = [sum(n.channel == DRUM_CHANNEL for n in score_for(replace(spec, speed=v))) / spec.duration
                  for v in (0.05, 0.2, 0.3, 0.43)]
    assert drum_rates == sorted(drum_rates) and drum_rates[-1] > 4 * drum_rates[0]
    kinds = [{n.pitch for n in score_for(replace(spec, speed=v)) if n.channel == DRUM_CHANNEL} for v in (0.05, 0.43)]
    assert corpus.CLOSED_HAT not in kinds[0] and corpus.CLOSED_HAT in kinds[1]


def test_background_hue_names_the_chord():
    for seed in range(20):
        spec = sample_spec(seed)
        scenes = scenes_for(spec)
        assert len(scenes) == len(spec.chords) == len(spec.cuts) + 1
        for scene, chord in zip(scenes, spec.chords):
            for color in (scene.top, scene.bottom):
                hue = colorsys.rgb_to_hsv(*(c / 255 for c in color))[0]
                sector = round(hue * len(PROGRESSION)) % len(PROGRESSION)
                assert sector == chord, (seed, color, chord)


def test_chord_variants_change_only_the_harmony():
    spec = sample_spec(11)
    variants = chord_variants(spec)
    assert len(variants) == len(PROGRESSION) and variants[0] == spec
    assert len({tuple(v.chords) for v in variants}) == len(variants)
    for variant in variants[1:]:
        assert (variant.base_note, variant.onsets_per_second, variant.cuts) == (spec.base_note,
                                                                                spec.onsets_per_second, spec.cuts)
        assert all(a != b for a, b in zip(variant.chords, spec.chords))
        assert not np.allclose(synthesize(variant), synthesize(spec))


def test_speed_pairs_differ_only_in_speed_and_tempo(tmp_path):
    specs = write_corpus(tmp_path, count=2, seed=21, duration=1.5, progress=False, speed_pairs=True)
    assert [s.seed for s in specs] == [21, 21, 22, 22]
    for spec, variant in (specs[:2], specs[2:]):
        assert replace(variant, speed=spec.speed) == spec == sample_spec(spec.seed, 1.5)
        low, high = SPEED_RANGE
        assert abs(variant.speed - spec.speed) >= VARIANT_SPEED_SHIFT[0] * (high - low) - 1e-9
        assert low <= variant.speed <= high and variant.onsets_per_second != spec.onsets_per_second
        for scene, moved in zip(scenes_for(spec), scenes_for(variant)):  # the same shot, moving at another speed
            assert (moved.top, moved.background, moved.lighting, len(moved.shapes)) == (
                scene.top, scene.background, scene.lighting, len(scene.shapes))
    manifest = [json.loads(line) for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert [Path(m["video_path"]).name for m in manifest] == ["clip_000021.mp4", "clip_000021_b.mp4",
                                                              "clip_000022.mp4", "clip_000022_b.mp4"]
    assert [m["group"] for m in manifest] == ["21", "21", "22", "22"]
    attributes = [json.loads(line) for line in (tmp_path / "attributes.jsonl").read_text().splitlines()]
    assert [a["speed"] for a in attributes] == [s.speed for s in specs]
    assert all(Path(m["path"]).is_file() and Path(m["video_path"]).is_file() for m in manifest)


def test_camera_and_shapes_move_at_the_clip_speed():
    cameras = set()
    for seed in range(12):
        spec = sample_spec(seed)
        for scene in scenes_for(spec):
            pan, zoom = np.hypot(*scene.pan), abs(scene.zoom)
            assert (pan == 0) or np.isclose(pan, spec.speed)
            assert (zoom == 0) or np.isclose(zoom, spec.speed * ZOOM_PER_SPEED)
            assert pan == 0 or zoom == 0
            assert pan or zoom or scene.shapes  # a still camera films at least one moving shape
            assert all(abs(shape.speed) == spec.speed for shape in scene.shapes)
            cameras.add("pan" if pan else "zoom" if zoom else "still")
    assert cameras == {"pan", "zoom", "still"}
    static = Scene(1.0, stripes=0.3)
    panning = Scene(1.0, stripes=0.3, pan=(0.2, 0.0))
    assert (render(static, 0.0, 64, 64) == render(static, 0.5, 64, 64)).all()
    first, later = render(panning, 0.0, 64, 64).astype(float), render(panning, 0.5, 64, 64).astype(float)
    assert np.abs(later - first).mean() > 2
    # a horizontal pan of 0.1 frame in 0.5 s shifts the stripes by 6.4 pixels along x
    assert np.abs(np.roll(first, 6, axis=1)[:, 10:] - later[:, 10:]).mean() < np.abs(later - first).mean() / 3
    zooming = Scene(1.0, background="texture", zoom=0.4)
    assert np.abs(render(zooming, 0.5, 64, 64).astype(float) - render(zooming, 0.0, 64, 64)).mean() > 2
    drifting = Scene(1.0, background="flat", shapes=[Shape(path="drift", speed=0.3, direction=0.0)])
    centroids = [np.argwhere(render(drifting, t, 64, 64).sum(-1) != render(Scene(1.0, background="flat"), t, 64, 64
                                                                            ).sum(-1))[:, 1].mean() for t in (0, 0.5)]
    assert centroids[1] - centroids[0] == pytest.approx(2 * np.pi * 0.25 * 0.3 * 0.5 * 64, abs=1.0)


def test_lighting_renders_brightness_whatever_the_look():
    for background in ("flat", "gradient", "texture", "landscape", "bokeh"):
        for lighting in LIGHTINGS:
            means = [render(Scene(1.0, top=(120, 80, 60), bottom=(60, 90, 140), brightness=b, background=background,
                                  lighting=lighting, shapes=[Shape()]), 0.0, 48, 32).mean() for b in (0.4, 0.8, 1.1)]
            assert means[0] + 10 < means[1] < means[2], (background, lighting, means)
    spot = render(Scene(1.0, top=(150, 150, 150), background="flat", lighting="spot", light=(0.2, 0.2)), 0, 64, 64)
    assert spot[10, 10].mean() > 1.5 * spot[60, 60].mean()  # lit from the top left, not a uniform gain


def test_every_look_makes_a_valid_video_of_its_format(tmp_path):
    formats = {(f.fps, f.size, f.crf) for f in map(video_format, range(60))}
    assert {f[1][0] > f[1][1] for f in formats} == {True, False}  # landscape and portrait frames
    assert len({f[0] for f in formats}) >= 3 and len({f[2] for f in formats}) >= 3
    for seed, look in enumerate(LOOKS):
        spec = sample_spec(seed, 1.0, (look,))
        meta = write_clip(spec, tmp_path)
        info, fmt = probe_video(meta.video_path), video_format(seed)
        assert (info.width, info.height) == fmt.size and info.fps == fmt.fps, (look, info, fmt)
        assert abs(info.duration - 1.0) < 1e-6 and info.num_frames == fmt.fps
        assert soundfile.info(meta.path).frames == 32000


def test_held_out_looks_never_enter_a_training_corpus(tmp_path):
    assert HELD_OUT_LOOKS and not set(HELD_OUT_LOOKS) & set(TRAIN_LOOKS)
    assert set(TRAIN_LOOKS) | set(HELD_OUT_LOOKS) == set(LOOKS)
    assert {sample_spec(seed).look for seed in range(300)} == set(TRAIN_LOOKS)
    assert corpus.main(["--out", str(tmp_path / "train"), "--count", "3", "--duration", "0.5"]) == 0
    assert corpus.main(["--out", str(tmp_path / "test"), "--count", "2", "--duration", "0.5", "--seed", "100",
                        "--looks", "held_out"]) == 0
    looks = {folder: [json.loads(line)["look"] for line in open(tmp_path / folder / "attributes.jsonl")]
             for folder in ("train", "test")}
    assert set(looks["train"]) <= set(TRAIN_LOOKS) and set(looks["test"]) == set(HELD_OUT_LOOKS)


def test_corpus_cli_rejects_an_unknown_look(tmp_path, capsys):
    assert corpus.main(["--out", str(tmp_path), "--count", "1", "--looks", "fractal"]) == 1
    assert "unknown looks ['fractal']" in capsys.readouterr().err


def decoded_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_parallel_rendering_writes_the_same_corpus(tmp_path):
    serial = write_corpus(tmp_path / "serial", count=2, seed=7, duration=1.0, progress=False)
    parallel = write_corpus(tmp_path / "parallel", count=2, seed=7, duration=1.0, progress=False, workers=2)
    assert serial == parallel
    for name in ("clip_000007.wav", "clip_000008.wav"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes()
    # the same pictures; x264's bytes can differ between two encodings of them on a busy machine (measured: up
    # to 8 different files in 8 encodings of one clip), so the decoded frames are compared
    for name in ("clip_000007.mp4", "clip_000008.mp4"):
        serial_frames, parallel_frames = (decoded_frames(tmp_path / d / name) for d in ("serial", "parallel"))
        assert serial_frames.shape == parallel_frames.shape
        assert np.abs(serial_frames.astype(float) - parallel_frames).mean() < 1.0
    serial_manifest, parallel_manifest = ((tmp_path / d / "data.jsonl").read_text().replace(str(tmp_path / d), "")
                                          for d in ("serial", "parallel"))
    assert serial_manifest == parallel_manifest


def test_corpus_files_and_evaluation(tmp_path, tiny_checkpoint):
    specs = write_corpus(tmp_path / "corpus", count=3, seed=1000, duration=2.0, progress=False)
    metas = load_video_audio_meta(tmp_path / "corpus")
    assert len(metas) == 3 and len(specs) == 3
    assert [meta.domain for meta in metas] == [spec.look for spec in specs]  # the read-out's folds hold out a look
    for meta in metas:
        assert abs(probe_video(meta.video_path).duration - 2.0) < 1e-6
        assert soundfile.info(meta.path).frames == 64000
    model = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    results = evaluate(model, tmp_path / "corpus", null_ablation=True)
    summary = results["summary"]
    assert summary["clips"] == 3 and set(summary) >= {"reference", "reconstruction", "generated", "null_video",
                                                      "codec"}
    measured = [music_attributes(soundfile.read(meta.path, dtype="float32")[0], 32000) for meta in metas]
    assert summary["reference"]["brightness_pitch"] == spearman([s.brightness for s in specs],
                                                                [m["pitch"] for m in measured])
    assert summary["reference"]["speed_onsets"] == spearman([s.speed for s in specs],
                                                            [m["onset_rate"] for m in measured])
    assert summary["hue_chord"]["chance"] == 1 / len(PROGRESSION)
    assert 0 <= summary["codec"]["frame_comb_share"] <= 1 and 0 < summary["codec"]["reference_frame_comb_share"] < 0.5
    assert 0 <= summary["hue_chord"]["own_chords_first"] <= 1
    assert summary["speed_tempo"]["own_tempo_first"] == sum(
        row["speed_scores"][0] > row["speed_scores"][1] for row in results["clips"]) / 3
    for row, spec in zip(results["clips"], specs):
        assert spec_from_row(row) == spec and len(row["chord_scores"]) == len(PROGRESSION)
        assert len(row["speed_scores"]) == 2
    assert all(line in format_summary(summary) for line in ("brightness->pitch", "hue -> chord", "speed -> tempo"))
    # the codec alone (`--codec`) measures the same reconstructions as the full evaluation, and generates nothing
    out = tmp_path / "codec.json"
    assert synth_evaluate_main(["--codec", str(tiny_checkpoint), "--corpus", str(tmp_path / "corpus"),
                                "--json", str(out)]) == 0
    codec_only = json.loads(out.read_text())
    assert codec_only["summary"]["reconstruction"] == summary["reconstruction"]
    assert codec_only["summary"]["codec"] == pytest.approx(summary["codec"])
    assert all("generated" not in row for row in codec_only["clips"])
    # the sampling is recorded: the model's default, or the guidance asked for
    assert summary["sampling"]["cfg_coef"] == model.generation_params["cfg_coef"]
    assert synth_evaluate_main(["--model_path", str(tiny_checkpoint), "--corpus", str(tmp_path / "corpus"),
                                "--limit", "1", "--cfg_coef", "1.5", "--json", str(out)]) == 0
    guided = json.loads(out.read_text())["summary"]
    assert guided["clips"] == 1 and guided["sampling"]["cfg_coef"] == 1.5
    assert guided["descriptors"] == "predicted"
    with pytest.raises(SystemExit):  # a clean error: this model has no descriptors to give
        synth_evaluate_main(["--model_path", str(tiny_checkpoint), "--corpus", str(tmp_path / "corpus"),
                             "--descriptors", "reference"])
    with pytest.raises(SystemExit) as exit_info:  # nor descriptors to rerank its draws by
        synth_evaluate_main(["--model_path", str(tiny_checkpoint), "--corpus", str(tmp_path / "corpus"),
                             "--rerank_candidates", "2"])
    assert exit_info.value.code == 2


def test_codec_evaluation_names_a_missing_codec(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth_evaluate_main(["--codec", str(tmp_path / "nowhere"), "--corpus", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: cannot load the codec from {tmp_path / 'nowhere'}: ") and "\n" not in error
