"""The synthetic corpus: deterministic, its music follows its rules, and the evaluation runs end to end."""

import colorsys

import numpy as np
import soundfile

from audiocraft_ext.data.video_dataset import load_video_audio_meta
from audiocraft_ext.media.video import probe_video
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.synth.attributes import music_attributes, spearman
from audiocraft_ext.synth.corpus import (PROGRESSION, chord_variants, sample_spec, scenes_for, spec_from_row,
                                         synthesize, write_corpus)
from audiocraft_ext.synth.evaluate import evaluate, format_summary
from audiocraft_ext.synth.scenes import Scene, render


def test_specs_and_music_are_deterministic():
    assert sample_spec(5) == sample_spec(5) and sample_spec(5) != sample_spec(6)
    assert (synthesize(sample_spec(5, 2.0)) == synthesize(sample_spec(5, 2.0))).all()


def test_reference_music_follows_the_rules():
    specs = [sample_spec(seed, 4.0) for seed in range(12)]
    measured = [music_attributes(synthesize(spec), 32000) for spec in specs]
    assert spearman([s.brightness for s in specs], [m["pitch"] for m in measured]) > 0.8
    assert spearman([s.speed for s in specs], [m["onset_rate"] for m in measured]) > 0.8


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


def test_camera_pans_at_the_clip_speed():
    for spec in (sample_spec(3), sample_spec(4)):
        for scene in scenes_for(spec):
            assert np.isclose(np.hypot(*scene.pan), spec.speed)
            assert scene.stripes > 0
    static = Scene(1.0, stripes=0.3)
    panning = Scene(1.0, stripes=0.3, pan=(0.2, 0.0))
    assert (render(static, 0.0, 64, 64) == render(static, 0.5, 64, 64)).all()
    first, later = render(panning, 0.0, 64, 64).astype(float), render(panning, 0.5, 64, 64).astype(float)
    assert np.abs(later - first).mean() > 2
    # a horizontal pan of 0.1 frame in 0.5 s shifts the stripes by 6.4 pixels along x
    assert np.abs(np.roll(first, 6, axis=1)[:, 10:] - later[:, 10:]).mean() < np.abs(later - first).mean() / 3


def test_parallel_rendering_writes_the_same_corpus(tmp_path):
    serial = write_corpus(tmp_path / "serial", count=2, seed=7, duration=1.0, progress=False)
    parallel = write_corpus(tmp_path / "parallel", count=2, seed=7, duration=1.0, progress=False, workers=2)
    assert serial == parallel
    for name in ("clip_000007.wav", "clip_000008.wav", "clip_000007.mp4"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes()
    serial_manifest, parallel_manifest = ((tmp_path / d / "data.jsonl").read_text().replace(str(tmp_path / d), "")
                                          for d in ("serial", "parallel"))
    assert serial_manifest == parallel_manifest


def test_corpus_files_and_evaluation(tmp_path, tiny_checkpoint):
    specs = write_corpus(tmp_path / "corpus", count=3, seed=1000, duration=2.0, progress=False)
    metas = load_video_audio_meta(tmp_path / "corpus")
    assert len(metas) == 3 and len(specs) == 3
    for meta in metas:
        assert abs(probe_video(meta.video_path).duration - 2.0) < 1e-6
        assert soundfile.info(meta.path).frames == 64000
    model = VidMuse.get_pretrained(tiny_checkpoint, device="cpu")
    results = evaluate(model, tmp_path / "corpus", null_ablation=True)
    summary = results["summary"]
    assert summary["clips"] == 3 and set(summary) >= {"reference", "generated", "null_video", "codec"}
    assert summary["reference"]["brightness_pitch"] > 0.9  # three clips, exact ranks
    assert summary["hue_chord"]["chance"] == 1 / len(PROGRESSION)
    assert 0 <= summary["hue_chord"]["own_chords_first"] <= 1
    for row, spec in zip(results["clips"], specs):
        assert spec_from_row(row) == spec and len(row["chord_scores"]) == len(PROGRESSION)
    assert "brightness->pitch" in format_summary(summary) and "hue -> chord" in format_summary(summary)
