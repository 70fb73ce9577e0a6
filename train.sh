#!/usr/bin/env bash
# Train VidMuse with Dora + Hydra + flashy (AudioCraft's stack). Arguments are Hydra overrides, e.g.
#   bash train.sh solver=vidmuse/debug dset=example                              # minutes on a CPU
#   bash train.sh solver=vidmuse/vidmuse_finetune dset=mydata continue_from=//pretrained/facebook/musicgen-small
# Several GPUs on one machine: TRAIN_ARGS=-d bash train.sh ...   A SLURM sweep: dora grid vidmuse.vidmuse_sweep
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/.venv/bin/python" ]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python3; fi
fi
export AUDIOCRAFT_CONFIG="${AUDIOCRAFT_CONFIG:-$HERE/config/teams/default.yaml}"
exec "$PYTHON" -m dora -P audiocraft_ext run ${TRAIN_ARGS:-} "$@"
