"""End-to-end tests of `infer.sh` / `python -m audiocraft_ext.infer` with a tiny exported checkpoint."""

import json
import os
from pathlib import Path
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile
import torch

from audiocraft_ext.infer import main
from audiocraft_ext.media.video import probe_video
from audiocraft_ext.synth.scenes import Scene, Shape, write_image

from media import read_index, write_video

ROOT = Path(__file__).resolve().parents[1]
AAC_FRAME = 1024 / 48000


def streams(path: Path):
    with av.open(str(path)) as container:
        return [s.type for s in container.streams]


def video_packets(path: Path):
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def audio_duration(path: Path, index: int = 0) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        return float(stream.duration * stream.time_base)


def run_cli(checkpoint: Path, video_dir: Path, output_dir: Path, *extra: str) -> int:
    return main(["--model_path", str(checkpoint), "--video_dir", str(video_dir), "--output_dir", str(output_dir),
                 "--seed", "0", "--quiet", *extra])


@pytest.fixture(scope="module")
def odd_inputs(tmp_path_factory) -> Path:
    """A folder of good and bad inputs: every case of the issue, small."""
    folder = tmp_path_factory.mktemp("inputs")
    write_video(folder / "plain.mp4", 33, 25, audio_seconds=1.32)                     # 1.32 s, with audio
    write_video(folder / "my clip été.mp4", 20, 10)                                   # spaces, non-ASCII
    write_video(folder / "portrait.mov", 24, 30, size=(48, 86))                       # 9:16
    write_video(folder / "odd.mkv", 12, 12, size=(65, 49), pix_fmt="yuv444p")        # odd width, mkv
    write_video(folder / "rotated.mp4", 10, 10, rotation=90)
    write_video(folder / "vfr.mp4", 8, 25, pts_seconds=[0, .05, .1, .3, .35, .6, .9, 1.0])
    write_video(folder / "single_frame.mp4", 1, 25)
    write_video(folder / "big.mp4", 2, 25, size=(3840, 2160))                        # 4K frames
    write_video(folder / "webm_clip.webm", 10, 10, codec="libvpx")                    # re-encoded to h264
    write_image(folder / "picture.png", Scene(1.0, shapes=[Shape()]), (96, 64))
    (folder / "notes.mp4").write_text("not a video at all")
    truncated = (folder / "plain.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(truncated[: len(truncated) // 3])
    with av.open(str(folder / "audio_only.m4a"), "w") as container:                  # no video stream
        stream = container.add_stream("aac", rate=32000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 32000
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(folder / "empty.mp4"), "w") as container:                        # a video stream, no frames
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    return folder


@pytest.fixture(scope="module")
def first_run(tiny_checkpoint, odd_inputs, tmp_path_factory):
    output = tmp_path_factory.mktemp("result")
    code = run_cli(tiny_checkpoint, odd_inputs, output, "--extensions", "mp4,mov,mkv,webm,m4a")
    return code, output


GOOD = ["plain.mp4", "my clip été.mp4", "portrait.mov", "odd.mkv", "rotated.mp4", "vfr.mp4", "single_frame.mp4",
        "big.mp4", "webm_clip.webm"]
BAD = ["notes.mp4", "truncated.mp4", "audio_only.m4a", "empty.mp4"]


def test_every_good_input_gets_wav_mp4_and_sidecar(first_run, odd_inputs):
    code, output = first_run
    assert code == 1  # some inputs failed
    for name in GOOD + ["picture.png"]:
        stem = Path(name).stem
        for suffix in (".wav", ".mp4", ".json"):
            assert (output / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
    for name in BAD:
        assert not (output / f"{Path(name).stem}.wav").exists()
    assert not [p for p in output.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_durations_match_the_video(first_run, odd_inputs):
    _, output = first_run
    for name in GOOD:
        video_duration = probe_video(odd_inputs / name).duration
        stem = Path(name).stem
        info = soundfile.info(str(output / f"{stem}.wav"))
        assert info.samplerate == 32000
        assert abs(info.frames / 32000 - video_duration) <= 0.02, name
        assert abs(audio_duration(output / f"{stem}.mp4") - video_duration) <= AAC_FRAME, name
        assert abs(probe_video(output / f"{stem}.mp4").duration - video_duration) <= 1e-3, name
        with av.open(str(output / f"{stem}.mp4")) as container:
            assert container.streams.audio[0].sample_rate == 48000


def test_mp4_has_one_video_and_one_audio_stream_and_copied_video(first_run, odd_inputs):
    _, output = first_run
    for name in GOOD:
        out = output / f"{Path(name).stem}.mp4"
        assert sorted(streams(out)) == ["audio", "video"], name
    for name in ["plain.mp4", "my clip été.mp4", "portrait.mov", "odd.mkv", "rotated.mp4", "big.mp4"]:
        assert video_packets(output / f"{Path(name).stem}.mp4") == video_packets(odd_inputs / name), name
    assert probe_video(output / "rotated.mp4").rotation == 90
    assert probe_video(output / "picture.mp4").duration == pytest.approx(10.0, abs=0.04)


def test_sidecar_records_model_parameters_and_seed(first_run, tiny_checkpoint):
    _, output = first_run
    sidecar = json.loads((output / "plain.json").read_text())
    assert sidecar["seed"] == 0 and sidecar["parameters"]["top_k"] == 250
    assert sidecar["parameters"]["rerank_candidates"] == 1  # the model's own: one draw
    assert sidecar["model"] == str(tiny_checkpoint) and len(sidecar["model_sha256"]) == 64
    assert sidecar["weights"] == {"format": "float32", "device": "cpu"}
    assert sidecar["duration"] == pytest.approx(1.32)


def test_skip_existing_and_overwrite(tiny_checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_video(inputs / "a.mp4", 10, 10)
    out = tmp_path / "out"
    assert run_cli(tiny_checkpoint, inputs, out) == 0
    stamp = (out / "a.json").stat().st_mtime_ns
    assert run_cli(tiny_checkpoint, inputs, out) == 0
    assert (out / "a.json").stat().st_mtime_ns == stamp  # skipped
    (out / "a.mp4").unlink()  # an interrupted run: incomplete outputs are redone
    assert run_cli(tiny_checkpoint, inputs, out) == 0
    assert (out / "a.mp4").is_file() and (out / "a.json").stat().st_mtime_ns != stamp
    stamp = (out / "a.json").stat().st_mtime_ns
    assert run_cli(tiny_checkpoint, inputs, out, "--overwrite") == 0
    assert (out / "a.json").stat().st_mtime_ns != stamp


def test_keep_and_mix_original_audio(tiny_checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_video(inputs / "a.mp4", 20, 10, audio_seconds=2.0)
    assert run_cli(tiny_checkpoint, inputs, tmp_path / "keep", "--original_audio", "keep") == 0
    assert sorted(streams(tmp_path / "keep" / "a.mp4")) == ["audio", "audio", "video"]
    assert run_cli(tiny_checkpoint, inputs, tmp_path / "mix", "--original_audio", "mix") == 0
    assert sorted(streams(tmp_path / "mix" / "a.mp4")) == ["audio", "video"]


def test_shared_stems_keep_their_extension_and_max_duration_cuts(tiny_checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_video(inputs / "a.mp4", 30, 10)
    write_video(inputs / "a.mov", 30, 10)
    out = tmp_path / "out"
    assert run_cli(tiny_checkpoint, inputs, out, "--max_duration", "1.25", "--batch_size", "2") == 0
    for name in ("a.mp4", "a.mov"):
        assert soundfile.info(str(out / f"{name}.wav")).frames == 40000
        assert probe_video(out / f"{name}.mp4").duration == pytest.approx(1.3, abs=1e-3)  # whole frames
        with av.open(str(out / f"{name}.mp4")) as container:  # the cut video decodes cleanly to its last frame
            frames = list(container.decode(video=0))
        assert [read_index(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1)) for f in frames] \
            == list(range(13))


def test_output_names_never_collide(tmp_path):
    from audiocraft_ext.pipeline import output_paths
    inputs = [tmp_path / n for n in ("a.mp4", "a.mov", "a.mov.mkv", "b.mp4")]
    names = [p.wav.name for p in output_paths(inputs, tmp_path).values()]
    assert names == ["a.mp4.wav", "a.mov.wav", "a.mov-2.wav", "b.wav"]


def model_error(capsys, *args) -> str:
    """The one-line error of a run whose model cannot be loaded (it exits with status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    return error


def test_a_checkpoint_that_is_not_vidmuse_exits_with_2(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    torch.save({"best_state": {"w": torch.zeros(1)}, "xp.cfg": "transformer_lm: {num_heads: 2}\n"},
               tmp_path / "model" / "state_dict.bin")
    write_video(tmp_path / "a.mp4", 5, 10)
    error = model_error(capsys, tmp_path / "model", tmp_path, tmp_path / "out")
    assert error.startswith(f"error: cannot load the model from {tmp_path / 'model'}: KeyError")


def test_refuses_output_folder_equal_to_input_and_missing_model(tiny_checkpoint, tmp_path, capsys):
    write_video(tmp_path / "a.mp4", 5, 10)
    assert run_cli(tiny_checkpoint, tmp_path, tmp_path) == 2
    error = model_error(capsys, tmp_path / "no_model", tmp_path, tmp_path / "out")
    assert "no such checkpoint folder" in error and "--local-dir vidmuse_official" in error
    assert not (tmp_path / "out").exists()


def test_settings_the_model_cannot_take_stop_the_run_before_any_output(tiny_checkpoint, tmp_path, caplog):
    write_video(tmp_path / "a.mp4", 5, 10)
    for option, reason in ((("--rerank_candidates", "2"), "needs a model built with music descriptors"),
                           (("--description", "soft strings"), "needs a model with a text conditioner"),
                           (("--cfg_coef_beta", "1"), "needs a model built with music descriptors")):
        caplog.clear()
        assert run_cli(tiny_checkpoint, tmp_path, tmp_path / "out", *option) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and reason in errors[0], errors
        assert not (tmp_path / "out").exists()


def test_infer_sh_passes_overrides_and_reports_failures(tiny_checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_video(inputs / "long.mp4", 5 * 31, 5, size=(32, 24))  # 31 s: two generation windows
    (inputs / "bad.mp4").write_text("junk")
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "infer.sh"), "--model_path", str(tiny_checkpoint), "--video_dir",
                             str(inputs), "--output_dir", str(tmp_path / "out"), "--seed", "0", "--quiet"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "done: 1" in result.stdout and "bad.mp4" in result.stdout
    assert "Traceback" not in result.stderr
    assert soundfile.info(str(tmp_path / "out" / "long.wav")).frames == 31 * 32000
