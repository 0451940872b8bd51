#!/usr/bin/env bash
# The small text-conditioned pyramid-flow DiT (issue "Pyramidal flow matching"): 3 stages,
# KL latents of the shipped cpu-kl tokenizer (17 x 64 x 64 -> 8 x 5 x 16 x 16), physics +
# shapes with their captions (all-MiniLM-L6-v2), text-to-video and continuation.
# NOT RUN YET: waits for tokenizer-cpu-kl (recipes/tokenizer_cpu.sh); STEPS is a guess until
# the speed of the small preset is measured on this CPU.
set -euo pipefail
TOK=${TOK:-tokenizer-cpu-kl}
STEPS=${STEPS:-3000}
for d in physics shapes; do
  [ -f "shards/$d-kl/index.json" ] || kinema tokenizer encode "$d" --n 6000 --seed 0 \
    --tokenizer "$TOK" --out "shards/$d-kl" --threads 2
done
kinema train flow --data shards/physics-kl --data shards/shapes-kl --tokenizer "$TOK" \
  --preset small --steps "$STEPS" --batch-size 16 --lr 3e-4 --warmup 100 --ema 0.999 \
  --precision bf16 --save-every 100 --seed 0 --threads 2 --out runs/flow-small
kinema eval physics --model runs/flow-small/model --scenario all --split id --n 256 \
  --json runs/flow-small/eval-physics-id.json
