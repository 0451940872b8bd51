#!/usr/bin/env bash
# The small text-conditioned pyramid-flow DiT (issue "Pyramidal flow matching"): 3 stages,
# KL latents of the shipped cpu-kl tokenizer (17 x 64 x 64 -> 8 x 5 x 16 x 16), physics +
# shapes with their captions (all-MiniLM-L6-v2), text-to-video and continuation.
#   bash recipes/flow_small.sh            # encode once, then train (resumable: --resume)
# Runs on one CPU thread next to another job (~1 s per step; 4,000 steps took ~2 sessions of
# background time); checkpoints every 100 steps, and RESUME=1 continues an interrupted run.
# Shipped as kinema/assets/models/flow-small (fp16 weights, tokenizer-cpu-kl inside).
set -euo pipefail
TOK=${TOK:-tokenizer-cpu-kl}
STEPS=${STEPS:-4000}
N=${N:-3000}
THREADS=${THREADS:-1}
for d in physics shapes; do
  [ -f "shards/$d-kl/index.json" ] || kinema tokenizer encode "$d" --n "$N" --seed 0 \
    --tokenizer "$TOK" --out "shards/$d-kl" --threads "$THREADS"
done
kinema train flow --data shards/physics-kl --data shards/shapes-kl --tokenizer "$TOK" \
  --preset small --steps "$STEPS" --batch-size 16 --lr 3e-4 --warmup 100 --ema 0.999 \
  --precision auto --save-every 100 --seed 0 --threads "$THREADS" --out runs/flow-small \
  $([ "${RESUME:-0}" = 1 ] && echo --resume)
# 86 clips per scenario and split: 258 in distribution, 258 out of distribution
kinema eval physics --model runs/flow-small/model --scenario all --split all --n 86 \
  --threads "$THREADS" --json runs/flow-small/eval-physics.json
