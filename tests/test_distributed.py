"""Beyond one process: training on two CPU processes through `train.sh` (torchrun, gloo), the SLURM grids'
dry run, and split inference (`--num_shards` / `--shard_index`, `NPROC_PER_NODE` processes)."""

import json
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

from audiocraft_ext.utils.shards import check_shard, shard

from conftest import interrupt_at_first_checkpoint, train_sh
from media import write_video

ROOT = Path(__file__).resolve().parents[1]
TRAIN_LINE = re.compile(r"Train \| Epoch (\d+) \| (\d+)/\d+ \|.* ce ([\d.]+)")


def test_shards_split_every_item_once_and_nest():
    items = list(range(11))
    shares = [shard(items, 3, i) for i in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shares, [])) == items
    # shard 1 of 3 split again in 2 is shard 1 + 3 j of 6
    assert [shard(shares[1], 2, j) for j in range(2)] == [shard(items, 6, 1), shard(items, 6, 4)]
    assert shard(items[:2], 4, 3) == []
    for bad in ((0, 0), (3, 3), (3, -1)):
        with pytest.raises(ValueError, match="shard"):
            check_shard(*bad)


def _solver_logs(xp: Path) -> list:
    return [(xp / f"solver.log.{rank}").read_text() for rank in range(2)]


def _train_losses(log: str) -> dict:
    """{(epoch, step): ce} of a rank's log."""
    return {(int(e), int(s)): float(ce) for e, s, ce in TRAIN_LINE.findall(log)}


def test_two_cpu_processes_train_share_the_cache_and_resume(manifest, tmp_path):
    dora, cache = tmp_path / "dora", tmp_path / "cache"
    data = [f"datasource.{split}={manifest.parent}" for split in ("train", "valid", "evaluate", "generate")]
    args = ["solver=vidmuse/debug", *data, "optim.epochs=3", "optim.updates_per_epoch=6", "generate.every=0",
            "evaluate.every=0", f"video.feature_cache={cache}"]
    log = tmp_path / "first.log"
    process = train_sh(args, dora, log, NPROC_PER_NODE="2")
    checkpoint = interrupt_at_first_checkpoint(process, dora, log)
    xp = checkpoint.parent
    assert 1 <= len(json.loads((xp / "history.json").read_text())) < 3, "interrupted before its last epoch"
    first = _solver_logs(xp)
    for rank, text in enumerate(first):
        assert f"distributed: world size 2, rank {rank} (local rank {rank}), backend gloo" in text
        # the four videos' CLIP tokens: two per rank, none twice
        assert f"rank {rank} computed CLIP tokens of 2 of its 2 videos (4 in all)" in text
    assert len(list(cache.glob("*.pt"))) == 4 and not list(cache.glob(".*")), "one file per video, no temp files"
    assert "Checkpoint saved" in first[0] and "Checkpoint saved" not in first[1]  # written once, by rank 0

    log = tmp_path / "second.log"
    assert train_sh(args, dora, log, NPROC_PER_NODE="2").wait(timeout=300) == 0, log.read_text()[-3000:]
    assert len(json.loads((xp / "history.json").read_text())) == 3
    second = [text[len(old):] for text, old in zip(_solver_logs(xp), first)]
    for rank, text in enumerate(second):
        assert f"Loading existing checkpoint: {checkpoint}" in text, rank  # every rank resumes
        assert f"rank {rank} computed CLIP tokens of 0 of its 2 videos" in text
    assert "Checkpoint saved" in second[0] and "Checkpoint saved" not in second[1]
    # identical weights on both ranks after every epoch (checked by all-gathering their hashes) ...
    hashes = [re.findall(r"model weights identical on all 2 ranks \(hash (\w+)\)", text) for text in second]
    assert hashes[0] == hashes[1] and len(hashes[0]) >= 1
    assert re.findall(r"Model hash: (\w+)", second[0])[-1] == hashes[0][-1]  # ... the weights rank 0 saved
    # ... while the ranks trained on different items: same weights, same dropout draws, different losses
    losses = [_train_losses(text) for text in second]
    assert losses[0].keys() == losses[1].keys() and losses[0]
    assert sum(losses[0][key] != losses[1][key] for key in losses[0]) >= len(losses[0]) // 2


def test_dora_grids_list_their_experiments_offline(tmp_path):
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(tmp_path))
    for grid, count in (("vidmuse.vidmuse_sweep", 8), ("vidmuse.vidmuse_debug", 2)):
        result = subprocess.run([sys.executable, "-m", "dora", "-P", "audiocraft_ext", "grid", grid, "--dry_run",
                                 "--init"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"Monitoring Grid {grid}" in result.stdout
        signatures = re.findall(r"N/A\s+([0-9a-f]{8})\s", result.stdout)
        assert len(set(signatures)) == count, result.stdout
        for sig in signatures:  # --init writes each XP's arguments, as a submission would
            assert json.loads((tmp_path / "xps" / sig / ".argv.json").read_text()), sig


def _infer(checkpoint: Path, video_dir: Path, output_dir: Path, *extra: str) -> int:
    from audiocraft_ext.infer import main
    return main(["--model_path", str(checkpoint), "--video_dir", str(video_dir), "--output_dir", str(output_dir),
                 "--quiet", *extra])


def _infer_sh(checkpoint: Path, video_dir: Path, output_dir: Path, *extra: str, nproc: int = 2
              ) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, NPROC_PER_NODE=str(nproc))
    return subprocess.run(["bash", str(ROOT / "infer.sh"), "--model_path", str(checkpoint), "--video_dir",
                           str(video_dir), "--output_dir", str(output_dir), *extra],
                          capture_output=True, text=True, env=env, cwd=output_dir.parent, timeout=300)


@pytest.mark.parametrize("flags, message", [
    (["--num_shards", "0"], "the shard count must be at least 1 (got 0)"),
    (["--num_shards", "2", "--shard_index", "2"], "shard index 2 out of range: with 2 shard(s) it must be in 0..1"),
    (["--shard_index", "-1"], "shard index -1 out of range"),
    (["--nproc_per_node", "0"], "nproc_per_node must be at least 1"),
])
def test_a_bad_shard_is_one_line_and_status_2(tiny_checkpoint, tmp_path, caplog, flags, message):
    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in" / "a.mp4", 5, 10)
    assert _infer(tiny_checkpoint, tmp_path / "in", tmp_path / "out", *flags) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(message) and "\n" not in errors[0]
    assert not (tmp_path / "out").exists()


def test_shards_and_local_processes_do_every_input_once_and_resume(tiny_checkpoint, tmp_path, capsys):
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("a.mp4", "a.mov", "b.mp4", "c.mkv"):  # a.* share a stem: named alike whatever the shard
        write_video(inputs / name, 10, 10)
    (inputs / "d.mp4").write_text("junk")
    # sorted: a.mov a.mp4 b.mp4 c.mkv d.mp4 -> shard 0 of 2: a.mov b.mp4 d.mp4; shard 1: a.mp4 c.mkv
    codes = []
    for index in range(2):
        codes.append(_infer(tiny_checkpoint, inputs, output, "--seed", "0", "--num_shards", "2",
                            "--shard_index", str(index)))
    assert codes == [1, 0]  # the bad input is shard 0's
    printed = capsys.readouterr().out
    assert "done: 2, skipped (outputs exist): 0, failed: 1" in printed and "d.mp4" in printed
    assert "done: 2, skipped (outputs exist): 0, failed: 0" in printed
    sidecars = {p.name: json.loads(p.read_text()) for p in output.glob("*.json")}
    assert sorted(sidecars) == ["a.mov.json", "a.mp4.json", "b.json", "c.json"]
    assert sorted(Path(s["input"]).name for s in sidecars.values()) == ["a.mov", "a.mp4", "b.mp4", "c.mkv"]
    assert not [p for p in output.iterdir() if p.name.startswith(".")], "temporary files left behind"

    # two local processes over the same folder: what the shards did is skipped, incomplete inputs are redone
    # (a.mp4 and b.mp4: one per process), with one seed for the run; one summary for both processes
    (output / "a.mp4.wav").unlink()
    (output / "b.mp4").unlink()
    result = _infer_sh(tiny_checkpoint, inputs, output)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "done: 2, skipped (outputs exist): 2, failed: 1" and len(lines) == 2, result.stdout
    assert lines[1].startswith(f"  failed: {inputs / 'd.mp4'}: ")
    assert re.search(r"2 processes \(auto, auto\), \d+ CPU thread\(s\) each", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    again = {p.name: json.loads(p.read_text()) for p in output.glob("*.json")}
    assert sorted(again) == sorted(sidecars)
    redone = ["a.mp4.json", "b.json"]
    assert all(again[name]["created"] > sidecars[name]["created"] for name in redone)
    assert again[redone[0]]["seed"] == again[redone[1]]["seed"] != 0
    assert all(again[name] == sidecars[name] for name in sidecars if name not in redone)
    assert (output / "a.mp4.wav").is_file() and (output / "b.mp4").is_file()


def test_local_processes_stop_with_status_2_when_no_model_loads(tmp_path):
    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in" / "a.mp4", 5, 10)
    write_video(tmp_path / "in" / "b.mp4", 5, 10)
    result = _infer_sh(tmp_path / "nowhere", tmp_path / "in", tmp_path / "out", "--quiet")
    assert result.returncode == 2 and result.stdout == ""
    errors = result.stderr.strip().splitlines()
    assert errors and all(line.startswith(f"error: cannot load the model from {tmp_path / 'nowhere'}")
                          for line in errors), result.stderr
