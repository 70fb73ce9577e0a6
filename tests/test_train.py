"""Training: manifest, dataset, feature cache, CFG dropout, and the train / resume / export path of train.sh."""

import json
import math
import os
from pathlib import Path
import re
import subprocess
import sys
import time
import typing as tp

import numpy as np
import pytest
import torch

from audiocraft_ext.data.build_manifest import build_manifest
from audiocraft_ext.data.feature_cache import FeatureCache
from audiocraft_ext.data.video_dataset import VideoAudioDataset, VideoAudioMeta, load_video_audio_meta, release_seek
from audiocraft_ext.models.export import LM_FILENAME, VIDEO_ENCODER_PREFIX
from audiocraft_ext.models.lm import VideoBatch, mean_token_log_likelihood
from audiocraft_ext.models.vidmuse import VidMuse
from audiocraft_ext.solvers.vidmuse import (cfg_dropout_video, contrast_partners, noise_music_history,
                                           null_videos_keeping_descriptors, video_contrast_loss,
                                           zero_init_cross_attention)
from audiocraft_ext.train import main, resolve_checkpoint_reference
from audiocraft_ext.utils.checksum import module_fingerprint

from conftest import build_tiny_lm, interrupt_at_first_checkpoint, train_sh
from media import index_frame, read_index, write_video

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_lists_usable_pairs_and_reasons(manifest, pairs):
    entries = load_video_audio_meta(manifest)
    assert sorted(Path(e.video_path).name for e in entries) == [f"pair{i}.mp4" for i in range(4)]
    for entry in entries:
        assert entry.sample_rate == 32000 and entry.duration == pytest.approx(5.0, abs=1e-3)
        assert Path(entry.path).is_file() and Path(entry.video_path).is_absolute()
    skipped = (manifest.parent / "skipped.txt").read_text()
    assert "silent.mp4\tno audio track" in skipped and "broken.mp4" in skipped


def test_manifest_pairs_audio_files_by_stem(tmp_path):
    videos, audio = tmp_path / "v", tmp_path / "a"
    videos.mkdir()
    audio.mkdir()
    write_video(videos / "one.mp4", 30, 10)
    write_video(videos / "two.mp4", 30, 10)
    import soundfile
    soundfile.write(str(audio / "one.wav"), np.zeros((44100 * 3, 2), np.float32), 44100)
    _, entries, skipped = build_manifest(videos, "paired", tmp_path / "egs", audio_dir=audio, dset_dir=tmp_path,
                                         progress=False)
    assert [(Path(e.path).name, e.sample_rate) for e in entries] == [("one.wav", 44100)]
    assert skipped[0][0].name == "two.mp4" and "no audio file" in skipped[0][1]
    assert "train: " in (tmp_path / "paired.yaml").read_text()


def test_manifest_line_without_video_path_names_the_file_and_the_line(tmp_path):
    entry = VideoAudioMeta(path="a.wav", duration=1.0, sample_rate=32000, video_path="a.mp4").to_dict()
    manifest = tmp_path / "data.jsonl"
    manifest.write_text(json.dumps(entry) + "\n\n" + json.dumps({**entry, "video_path": ""}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{manifest}:3: manifest entry without video_path")):
        load_video_audio_meta(tmp_path)
    manifest.write_text(json.dumps(entry) + "\n" + json.dumps({k: v for k, v in entry.items() if k != "video_path"}))
    with pytest.raises(ValueError, match=re.escape(f"{manifest}:2: manifest entry without video_path")):
        load_video_audio_meta(manifest)
    manifest.write_text(json.dumps(entry) + "\n{not json\n")
    with pytest.raises(ValueError, match=re.escape(f"{manifest}:2: ")):
        load_video_audio_meta(manifest)
    manifest.write_text(json.dumps(entry) + "\n")
    assert [m.video_path for m in load_video_audio_meta(manifest)] == ["a.mp4"]


def test_release_segment_seek():
    assert release_seek(95.0, 30.0, 0.8, 0.0) == 0.0
    assert release_seek(95.0, 30.0, 0.8, 0.99) == 60.0  # max_seek 71 s: starts 0, 30 or 60
    assert release_seek(20.0, 30.0, 0.8, 0.7) == 0.0


def test_dataset_items_are_time_aligned(tmp_path):
    path = write_video(tmp_path / "idx.mp4", 100, 10, audio_seconds=10.0)  # 10 s, frame i at i / 10 s
    meta = [VideoAudioMeta(path=str(path), duration=10.0, sample_rate=32000, video_path=str(path))]
    dataset = VideoAudioDataset(meta, num_global_frames=4, frame_size=32, seek_mode="random", segment_duration=3.0,
                                sample_rate=32000, channels=1, num_samples=8, shuffle=True)
    for index in range(4):
        wav, local, glob, info = dataset[index]
        assert wav.shape == (1, 96000) and local.shape == (3, 6, 32, 32) and glob.shape == (3, 4, 32, 32)
        assert info.seek_time * 2 == int(info.seek_time * 2)  # on the local frame grid
        assert [read_index(local[:, k]) for k in range(6)] == [round((info.seek_time + k / 2) * 10) for k in range(6)]
    batch = dataset.collater([dataset[0], dataset[1]])
    assert batch[0].shape == (2, 1, 96000) and batch[1].shape == (2, 3, 6, 32, 32) and len(batch[3]) == 2


def test_variant_pairs_come_side_by_side_at_one_segment_start(tmp_path):
    metas = []
    for name, group, offset in (("a", "1", 0), ("a_b", "1", 20), ("c", "2", 40), ("c_b", "2", 60)):
        path = write_video(tmp_path / f"{name}.mp4", 100, 10, audio_seconds=10.0,
                           frame_fn=lambda i, h, w, offset=offset: index_frame(i + offset, h, w))
        metas.append(VideoAudioMeta(path=str(path), duration=10.0, sample_rate=32000, video_path=str(path),
                                    group=group))
    dataset = VideoAudioDataset(metas, num_global_frames=2, frame_size=32, seek_mode="random", segment_duration=2.0,
                                sample_rate=32000, channels=1, num_samples=8, shuffle=True, pair_variants=True)
    wav, local, glob, infos = dataset.collater([dataset[i] for i in range(4)])
    assert wav.shape == (8, 1, 64000) and local.shape == (8, 3, 4, 32, 32) and len(infos) == 8
    for first, second in zip(infos[::2], infos[1::2]):
        assert first.meta.group == second.meta.group and first.meta.path != second.meta.path
        assert first.seek_time == second.seek_time
    for item, info in enumerate(infos):  # each segment's frames come from its own video
        offset = {"a": 0, "a_b": 20, "c": 40, "c_b": 60}[Path(info.meta.path).stem]
        assert read_index(local[item, :, 0]) == offset + round(info.seek_time * 10)
    assert contrast_partners([info.meta.group for info in infos]).tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
    with pytest.raises(ValueError, match="no variant in their group"):
        VideoAudioDataset(metas[:3], segment_duration=2.0, sample_rate=32000, channels=1, pair_variants=True)


def test_contrast_partners_roll_a_batch_that_is_not_paired():
    assert contrast_partners([None, None, None]).tolist() == [2, 0, 1]
    assert contrast_partners(["1", "1", "2", "3"]).tolist() == [3, 0, 1, 2]


def test_feature_cache_matches_clip_and_follows_file_changes(tmp_path, tiny_lm_cfg):
    lm = build_tiny_lm(tiny_lm_cfg)
    encoder = lm.video_encoder
    video = write_video(tmp_path / "v.mp4", 30, 10)
    cache = FeatureCache(tmp_path / "cache", module_fingerprint(encoder.visual_encoder_model), num_global_frames=4)
    assert cache.build([video], encoder.clip_tokens, progress=False) == 1
    assert cache.build([video], encoder.clip_tokens, progress=False) == 0  # cached
    local, glob = cache.segment(video, 1.0, 1.5)
    from audiocraft_ext.media.video import load_video_frames
    frames = load_video_frames(video, start=1.0, duration=1.5, num_global_frames=4)
    expected = encoder.clip_tokens(frames.local_frames.permute(1, 0, 2, 3))
    torch.testing.assert_close(local, expected, atol=2e-2, rtol=2e-2)  # stored as float16
    assert glob.shape == (4, 50, 24)
    old = cache.path_for(video)
    time.sleep(0.01)
    write_video(video, 20, 10)  # the video changes: its features are recomputed
    assert cache.path_for(video) != old
    assert cache.build([video], encoder.clip_tokens, progress=False) == 1


def test_cfg_dropout_replaces_whole_items_by_the_null_video():
    local = torch.ones(64, 3, 2, 4, 4, dtype=torch.uint8)
    glob = torch.ones(64, 3, 3, 4, 4, dtype=torch.uint8)
    out_local, out_glob, drop = cfg_dropout_video(local, glob, 0.3, torch.zeros_like(local), torch.zeros_like(glob),
                                                  torch.Generator().manual_seed(0))
    dropped = out_local.flatten(1).amax(1) == 0
    assert torch.equal(dropped, out_glob.flatten(1).amax(1) == 0) and torch.equal(dropped, drop)
    assert (out_local.flatten(1).amin(1)[~dropped] == 1).all()
    assert 8 < dropped.sum() < 32
    kept_local, _, none = cfg_dropout_video(local, glob, 0.0, local * 0, glob * 0)
    assert kept_local is local and not none.any()


def test_video_dropout_nulls_the_video_and_keeps_the_descriptors_and_text():
    local = torch.ones(32, 3, 2, 4, 4, dtype=torch.uint8)
    glob = torch.ones(32, 3, 3, 4, 4, dtype=torch.uint8)
    descriptors = torch.randn(32, 2)
    texts = [f"clip {i}" for i in range(32)]
    video = VideoBatch(local, glob, descriptions=texts, music_descriptors=descriptors.clone())
    nulled = null_videos_keeping_descriptors(video, 0.5, torch.zeros_like(local), torch.zeros_like(glob),
                                             torch.Generator().manual_seed(0))
    assert 4 < nulled.sum() < 28
    assert torch.equal(video.local_frames.flatten(1).amax(1) == 0, nulled)
    assert torch.equal(video.global_frames.flatten(1).amax(1) == 0, nulled)
    assert torch.equal(video.music_descriptors, descriptors) and video.descriptions == texts
    untouched = VideoBatch(local, glob, music_descriptors=descriptors)
    assert not null_videos_keeping_descriptors(untouched, 0.0, local * 0, glob * 0).any()
    assert untouched.local_frames is local and untouched.global_frames is glob


def test_noise_music_history_replaces_a_prefix_and_keeps_the_first_codebook_there():
    codes = torch.randint(0, 16, (200, 4, 50), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(codes, dtype=torch.bool)
    mask[:, :, 45:] = False  # padding stays out of the loss
    inputs, keep = noise_music_history(codes, mask, 0.5, 1024, torch.Generator().manual_seed(1))
    changed = (inputs != codes).any(1)  # [B, T]; random codes from 1024 almost never equal codes below 16
    noised = changed.any(1)
    assert 60 < noised.sum() < 140
    starts = changed.float().cumprod(1).sum(1).long()  # each noised item: a prefix of steps, then its own codes
    assert torch.equal(changed.sum(1), starts)
    assert (inputs[noised].amax((1, 2)) >= 16).all()  # noise is drawn over the codebook, not the batch's codes
    for item in noised.nonzero()[:, 0].tolist():
        start = int(starts[item])
        assert torch.equal(keep[item, 0], mask[item, 0])  # the first codebook trains everywhere
        assert not keep[item, 1:, :start].any() and torch.equal(keep[item, 1:, start:], mask[item, 1:, start:])
    assert torch.equal(keep[~noised], mask[~noised]) and torch.equal(inputs[~noised], codes[~noised])
    same_inputs, same_mask = noise_music_history(codes, mask, 0.0, 1024)
    assert same_inputs is codes and same_mask is mask


def test_video_contrast_loss_prefers_the_own_video():
    own = torch.tensor([-1.0, -2.0, -3.0])  # music i given video i
    other = torch.tensor([-1.5, -2.5, -2.0])  # music i given video i-1
    everyone = torch.ones(3, dtype=torch.bool)
    softplus = torch.nn.functional.softplus
    assert torch.isclose(video_contrast_loss(own, other, everyone, 1.0),
                         softplus(-torch.tensor([0.5, 0.5, -1.0])).mean())
    assert torch.isclose(video_contrast_loss(own, other, torch.tensor([False, False, True]), 0.5),
                         softplus(torch.tensor(2.0)))
    assert video_contrast_loss(own, other, torch.zeros(3, dtype=torch.bool), 1.0) == 0
    assert torch.isclose(video_contrast_loss(own, own, everyone, 0.01), torch.tensor(2.0).log())  # a coin flip
    own.requires_grad_(True)
    video_contrast_loss(own, other, everyone, 0.1).backward()
    assert (own.grad < 0).all()  # descending the loss raises the own video's likelihood


def test_mean_token_log_likelihood_reads_only_masked_positions():
    torch.manual_seed(0)
    codes = torch.randint(0, 8, (2, 2, 5))
    mask = torch.ones(2, 2, 5, dtype=torch.bool)
    mask[:, 1, 0] = False  # a delay-pattern position: NaN logits, not scored
    mask[:, :, 4] = False  # padding past the audio's end: the special token (out of the vocabulary), not scored
    logits = torch.randn(2, 2, 5, 8)
    logits[:, 1, 0] = float("nan")
    codes[:, :, 4] = 8
    logits.requires_grad_(True)
    scores = mean_token_log_likelihood(logits, codes, mask)
    expected = torch.log_softmax(logits.detach(), -1).gather(-1, codes.clamp(max=7)[..., None])[..., 0]
    assert torch.allclose(scores, expected.where(mask, 0).sum((1, 2)) / mask.sum((1, 2)))
    scores.sum().backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad[:, 1, 0].any() and not logits.grad[..., 4, :].any()
    target_grad = logits.grad.gather(-1, codes.clamp(max=7)[..., None])[..., 0]
    assert (target_grad[mask] > 0).all()  # ascending the score raises each scored token's probability


def test_zero_init_cross_attention_starts_by_ignoring_the_video(tiny_lm_cfg):
    from audiocraft_ext.models.lm import VideoBatch
    lm = build_tiny_lm(tiny_lm_cfg)
    codes = torch.randint(0, tiny_lm_cfg.transformer_lm.card, (1, 4, 20))
    videos = [VideoBatch(torch.randint(0, 256, (1, 3, 2, 224, 224), dtype=torch.uint8),
                         torch.randint(0, 256, (1, 3, 4, 224, 224), dtype=torch.uint8)) for _ in range(2)]

    def logits():
        return [lm.compute_predictions(codes, [], condition_tensors=lm.compute_video_condition(v)).logits.nan_to_num()
                for v in videos]

    assert not torch.allclose(*logits())
    zero_init_cross_attention(lm)
    assert torch.equal(*logits())


def _export(source: tp.Sequence[str], out: Path, dora_dir: tp.Optional[Path] = None) -> VidMuse:
    """Export a training checkpoint (`--checkpoint PATH` or `--sig SIG`, and other export options) with the export
    CLI, check it, load it."""
    env = dict(os.environ, **({"AUDIOCRAFT_DORA_DIR": str(dora_dir)} if dora_dir else {}))
    result = subprocess.run([sys.executable, "-m", "audiocraft_ext.export", *source, "--out", str(out), "--check"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded:" in result.stdout
    return VidMuse.get_pretrained(out, device="cpu")


def test_train_resume_export_with_train_sh(manifest, tmp_path):
    dora = tmp_path / "dora"
    data = [f"datasource.{split}={manifest.parent}" for split in ("train", "valid", "evaluate", "generate")]
    args = ["solver=vidmuse/debug", *data, "optim.epochs=4", "optim.updates_per_epoch=12", "generate.every=4",
            "evaluate.every=4", "video.visual.music_descriptors=true",
            "classifier_free_guidance.inference_coef_beta=0.5",  # the generate stage decodes three branches
            "music_descriptors.refit=true"]  # fitted at the start, not again when the run resumes
    log = tmp_path / "first.log"
    process = train_sh(args, dora, log)
    checkpoint = interrupt_at_first_checkpoint(process, dora, log)
    history = json.loads((checkpoint.parent / "history.json").read_text())
    assert 1 <= len(history) < 4, "the run should be interrupted before its last epoch"

    log = tmp_path / "second.log"
    assert train_sh(args, dora, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "Loading existing checkpoint" in text
    assert "descriptor head fitted on" in (tmp_path / "first.log").read_text()
    assert "descriptor head fitted on" not in text  # the resumed run keeps the fitted head
    history = json.loads((checkpoint.parent / "history.json").read_text())
    assert len(history) == 4
    train_ce = [epoch["train"]["ce"] for epoch in history]
    assert train_ce[-1] < train_ce[0] - 0.5  # the loss goes down
    gains = [epoch[stage]["video_gain"] for epoch in history for stage in ("valid", "evaluate") if stage in epoch]
    assert gains and all(math.isfinite(gain) and gain != 0 for gain in gains)  # zero only if the video is unread
    assert list((checkpoint.parent / "samples" / "epoch_0004").glob("*.wav"))

    out = tmp_path / "exported"
    model = _export(["--sig", checkpoint.parent.name], out, dora_dir=dora)
    best = torch.load(checkpoint, weights_only=True)["best_state"]["model"]
    for key, value in model.lm.state_dict().items():
        assert torch.equal(value, best[key]), key
    audio = model.generate([load_video_audio_meta(manifest)[0].video_path], seed=0)
    assert audio[0].shape == (1, 5 * 32000)
    assert model.lm.cfg_coef_beta == 0.5 and model.rerank_candidates == 1  # the run's defaults are the export's
    # stored in float16 but for the video encoder: a smaller file, loaded back in float32; other default sampling
    half = _export(["--sig", checkpoint.parent.name, "--lm_dtype", "float16", "--cfg_coef_beta", "1",
                    "--rerank_candidates", "2"], tmp_path / "half", dora_dir=dora)
    assert half.lm.cfg_coef_beta == 1.0 and half.rerank_candidates == 2
    halved = sum(v.numel() * 2 for k, v in best.items()
                 if v.is_floating_point() and not k.startswith(VIDEO_ENCODER_PREFIX))
    assert (tmp_path / "half" / LM_FILENAME).stat().st_size < (out / LM_FILENAME).stat().st_size - 0.9 * halved
    for key, value in half.lm.state_dict().items():
        assert value.dtype == best[key].dtype, key
        exact = key.startswith(VIDEO_ENCODER_PREFIX) or not value.is_floating_point()
        assert torch.equal(value, best[key] if exact else best[key].half().float()), key
    assert half.generate([load_video_audio_meta(manifest)[0].video_path], seed=0)[0].shape == (1, 5 * 32000)

    # fine-tuning from the exported model (its music descriptors on), with the contrastive loss, history noise and
    # video dropout: every weight comes from it, and the loss starts where it ended; the folder is given relative to
    # where train.sh runs (the solver runs in its XP folder); its read-out refitted on the same clips is the same
    log = tmp_path / "finetune.log"
    finetune = ["solver=vidmuse/debug", *data, "optim.epochs=1",
                f"continue_from=//pretrained/{os.path.relpath(out, ROOT)}",
                "generate.every=0", "evaluate.every=0", "contrastive.weight=1", "video.visual.music_descriptors=true",
                "history_noise.probability=0.5", "music_descriptors.video_dropout=0.5", "dataset.batch_size=4",
                "music_descriptors.refit=true"]
    assert train_sh(finetune, dora, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "keep their initialisation" not in log.read_text()
    assert "descriptor head fitted on" in log.read_text()
    tuned_folder = next(p.parent for p in dora.glob("xps/*/history.json") if p.parent != checkpoint.parent)
    tuned = json.loads((tuned_folder / "history.json").read_text())
    tuned_best = torch.load(tuned_folder / "checkpoint.th", weights_only=True)["best_state"]["model"]
    frozen = [key for key in tuned_best if ".visual_encoder_model." in key or ".descriptor_head." in key]
    assert frozen and all(torch.equal(tuned_best[key], best[key]) for key in frozen)  # the EMA keeps them exact
    train = tuned[0]["train"]
    cross_entropy = np.mean([train[f"ce_q{k}"] for k in range(1, 5)])
    assert cross_entropy < train_ce[0] - 0.5
    for stage in ("train", "valid"):  # ce includes the (positive) contrastive term, so the best state follows it
        metrics = tuned[0][stage]
        assert 0 < metrics["ce"] - np.mean([metrics[f"ce_q{k}"] for k in range(1, 5)]) < 7, stage

    # a model whose read-out read other statistics (a head of another width: one statistic fewer) gets its read-out
    # fitted anew, and nothing else changed, by a run that trains nothing (optim.epochs=0)
    older = tmp_path / "older_readout"
    older.mkdir()
    package = torch.load(out / LM_FILENAME, weights_only=False)
    head = {key: value for key, value in package["best_state"].items() if ".descriptor_head." in key}
    width = head["video_encoder.descriptor_head.0.running_mean"].shape[0]
    package["best_state"].update({key: value[..., :-1] for key, value in head.items()
                                  if value.dim() and value.shape[-1] == width})
    torch.save(package, older / LM_FILENAME)
    log = tmp_path / "refit.log"
    refit = ["solver=vidmuse/debug", *data, "optim.epochs=0", "video.visual.music_descriptors=true",
             f"continue_from=//pretrained/{os.path.relpath(older, ROOT)}"]
    assert train_sh(refit, dora, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "descriptor head fitted on" in log.read_text()
    refit_folder = next(p.parent for p in dora.glob("xps/*/checkpoint.th")
                        if p.parent not in (checkpoint.parent, tuned_folder))
    refitted = torch.load(refit_folder / "checkpoint.th", weights_only=True)["best_state"]["model"]
    for key, value in best.items():  # the same clips give the same read-out; the LM is the exported one
        same = torch.allclose(refitted[key], value, atol=1e-5) if key in head else torch.equal(refitted[key], value)
        assert same, key


def test_checkpoint_references_resolve_from_the_launch_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stage1").mkdir()
    assert resolve_checkpoint_reference("//pretrained/stage1") == f"//pretrained/{tmp_path / 'stage1'}"
    assert resolve_checkpoint_reference("stage1") == str(tmp_path / "stage1")
    assert (resolve_checkpoint_reference("//sig/1234abcd")
            == f"//pretrained/{Path(main.dora.dir) / 'xps' / '1234abcd' / 'checkpoint.th'}")
    assert resolve_checkpoint_reference("stage1", continue_from=True) == f"//pretrained/{tmp_path / 'stage1'}"
    for unchanged in ("//pretrained/facebook/musicgen-small", "/abs/ckpt.th", None):
        assert resolve_checkpoint_reference(unchanged) == unchanged


def test_codec_training_then_lm_on_that_codec(manifest, tmp_path):
    """The codec (with the iSTFT decoder, started from the data's spectra, best state by validation loss) trains
    with AudioCraft's compression solver through train.sh (with the mrstft loss); its decoder retrains alone from
    it; the LM then trains on its tokens, and the export ships the codec's weights."""
    dora = tmp_path / "dora"
    data = [f"datasource.{split}={manifest.parent}" for split in ("train", "valid", "evaluate", "generate")]
    codec = ["solver=compression/debug", *data, "encodec.autoencoder=stft", "stft.fit_frames=64",
             "best_metric=msspec"]
    log = tmp_path / "codec.log"
    assert train_sh(codec, dora, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    assert "codec started from 64 frames" in log.read_text() and "New best state with msspec=" in log.read_text()
    codec_checkpoint = next(dora.glob("xps/*/checkpoint.th"))
    assert list((codec_checkpoint.parent / "samples").rglob("*_codec.wav"))
    history = json.loads((codec_checkpoint.parent / "history.json").read_text())
    assert all(np.isfinite(epoch["train"]["mrstft"]) for epoch in history)  # the [1]-shaped loss is weighted
    # codec training continues from a codec run (AudioCraft's continue_from reads hub packages only); with
    # trainable=decoder the encoder and codebooks stay exactly as loaded (so do the tokens), the decoder trains
    log = tmp_path / "codec_decoder.log"
    assert train_sh([*codec, f"continue_from={codec_checkpoint}", "trainable=decoder",
                     "optim.epochs=1", "evaluate.every=0", "generate.every=0"], dora, log).wait(timeout=300) == 0, \
        log.read_text()[-3000:]
    continued = next(p for p in dora.glob("xps/*/checkpoint.th") if p != codec_checkpoint)
    before = torch.load(codec_checkpoint, weights_only=True)["best_state"]["model"]
    continued_pkg = torch.load(continued, weights_only=True)
    for after in (continued_pkg["model"], continued_pkg["best_state"]["model"]):  # live weights and what is loaded
        kept = [key for key in before if key.startswith(("encoder.", "quantizer."))]
        assert kept and all(torch.equal(before[key], after[key]) for key in kept)
        assert any(not torch.equal(before[key], after[key]) for key in before if key.startswith("decoder."))
    log = tmp_path / "codec_decoder_alone.log"
    assert train_sh([*codec, "trainable=decoder"], dora, log).wait(timeout=300) != 0
    assert "give it continue_from=" in log.read_text()
    log = tmp_path / "lm.log"
    lm_args = ["solver=vidmuse/debug", *data, "optim.epochs=1", "generate.every=0", "evaluate.every=0",
               f"compression_model_checkpoint={codec_checkpoint}"]
    assert train_sh(lm_args, dora, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    lm_checkpoint = next(p for p in dora.glob("xps/*/checkpoint.th") if p not in (codec_checkpoint, continued))
    model = _export(["--checkpoint", str(lm_checkpoint)], tmp_path / "model")
    trained = torch.load(codec_checkpoint, weights_only=True)["best_state"]["model"]
    for key, value in model.compression_model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert model.generate([load_video_audio_meta(manifest)[0].video_path], seed=0)[0].shape == (1, 5 * 32000)
