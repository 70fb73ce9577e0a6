"""Beyond one process: training on two CPU processes through `train.sh` (torchrun, gloo), the SLURM grids'
dry run, and split inference (`--num_shards` / `--shard_index`, `NPROC_PER_NODE` processes)."""

import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import pytest

from audiocraft_ext.utils.shards import check_shard, shard

from test_train import _train, manifest, pairs  # noqa: F401  (the module's fixtures: four video-music pairs)

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


def test_two_cpu_processes_train_share_the_cache_and_resume(manifest, tmp_path):  # noqa: F811
    dora, cache = tmp_path / "dora", tmp_path / "cache"
    data = [f"datasource.{split}={manifest.parent}" for split in ("train", "valid", "evaluate", "generate")]
    args = ["solver=vidmuse/debug", *data, "optim.epochs=3", "optim.updates_per_epoch=6", "generate.every=0",
            "evaluate.every=0", f"video.feature_cache={cache}"]
    log = tmp_path / "first.log"
    process = _train(args, dora, log, NPROC_PER_NODE="2")
    deadline = time.time() + 240
    checkpoint = None
    while time.time() < deadline and process.poll() is None:  # interrupt the run once it has a checkpoint
        found = list(dora.glob("xps/*/checkpoint.th"))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.2)
    assert checkpoint is not None, log.read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
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
    assert _train(args, dora, log, NPROC_PER_NODE="2").wait(timeout=300) == 0, log.read_text()[-3000:]
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
