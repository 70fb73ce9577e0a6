#!/usr/bin/env bash
# Train VidMuse with Dora + Hydra + flashy (AudioCraft's stack). Arguments are Hydra overrides, e.g.
#   bash train.sh solver=vidmuse/debug dset=example                              # minutes on a CPU
#   bash train.sh solver=vidmuse/vidmuse_finetune dset=mydata continue_from=//pretrained/facebook/musicgen-small
# Several processes (torchrun; NCCL with one GPU each, gloo on CPUs): NPROC_PER_NODE=4 bash train.sh ...
#   several machines: NNODES=2 NODE_RANK=0|1 MASTER_ADDR=<node 0> MASTER_PORT=29500 NPROC_PER_NODE=8 bash train.sh ...
# Dora's own launcher: TRAIN_ARGS=-d bash train.sh ...   A SLURM sweep: dora grid vidmuse.vidmuse_sweep (README)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/.venv/bin/python" ]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python3; fi
fi
export AUDIOCRAFT_CONFIG="${AUDIOCRAFT_CONFIG:-$HERE/config/teams/default.yaml}"
# The example data set's manifest (egs/ is per machine, not in git) is built on first use.
for arg in "$@"; do
  if [ "$arg" = "dset=example" ] && [ ! -e "$HERE/egs/example/data.jsonl" ]; then
    "$PYTHON" -m audiocraft_ext.data.build_manifest --videos "$HERE/dataset/example/train" --name example \
      --egs_dir "$HERE/egs" --dset_dir ""
  fi
done
NPROC_PER_NODE="${NPROC_PER_NODE:-1}"
NNODES="${NNODES:-1}"
if [ "$NPROC_PER_NODE" -le 1 ] && [ "$NNODES" -le 1 ]; then
  exec "$PYTHON" -m dora -P audiocraft_ext run ${TRAIN_ARGS:-} "$@"
fi
# the machine's cores shared by its processes (torchrun would give each one thread)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / NPROC_PER_NODE > 1 ? $(nproc) / NPROC_PER_NODE : 1 ))}"
if [ "$NNODES" -gt 1 ]; then
  if [ -z "${MASTER_ADDR:-}" ]; then echo "error: NNODES=$NNODES needs MASTER_ADDR (the address of node 0)" >&2; exit 2; fi
  RENDEZVOUS=(--nnodes "$NNODES" --node_rank "${NODE_RANK:-0}" --master_addr "$MASTER_ADDR"
              --master_port "${MASTER_PORT:-29500}")
elif [ -n "${MASTER_PORT:-}" ]; then
  RENDEZVOUS=(--master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "$MASTER_PORT")
else
  RENDEZVOUS=(--standalone)  # one machine: a free port
fi
exec "$PYTHON" -m torch.distributed.run "${RENDEZVOUS[@]}" --nproc_per_node "$NPROC_PER_NODE" \
  -m dora -P audiocraft_ext run ${TRAIN_ARGS:-} "$@"
