#!/usr/bin/env bash
# Music for a folder of videos, with the release's defaults. Any argument overrides them, e.g.
#   bash infer.sh --video_dir my_clips --output_dir my_music --seed 0
# Outputs per input: <stem>.wav (32 kHz), <stem>.mp4 (video + music), <stem>.json (model, parameters, seed).
# Several processes here (one GPU each when there are GPUs): NPROC_PER_NODE=4 bash infer.sh ...
# One shard of the inputs (e.g. a SLURM array task): bash infer.sh --num_shards 8 --shard_index 3 --seed 0 ...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/.venv/bin/python" ]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" -m audiocraft_ext.infer \
  --model_path ./model --video_dir ./dataset/example/infer --output_dir ./result/ \
  --topk 250 --topp 0 --temperature 1.0 --cfg_coef 3.0 --nproc_per_node "${NPROC_PER_NODE:-1}" "$@"
