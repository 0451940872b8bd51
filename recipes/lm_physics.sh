#!/usr/bin/env bash
# The physics token LMs (issue "Token LM"): NBP with 1x1x16 blocks and NTP (1x1x1) with the
# same size and budget, on tokens of the shipped FSQ tokenizer. 17-frame 64x64 clips ->
# 5 x 16 x 16 tokens; 5 given frames (2 latent frames) -> 12 predicted (3 latent frames).
# NOT RUN YET: waits for tokenizer-cpu-fsq (recipes/tokenizer_cpu.sh); STEPS is a guess
# until the speed of the small preset is measured on this CPU.
#   bash recipes/lm_physics.sh            # encode once, then nbp and ntp side by side
set -euo pipefail
TOK=${TOK:-tokenizer-cpu-fsq}
STEPS=${STEPS:-3000}
SHARDS=${SHARDS:-shards/physics-fsq}
[ -f "$SHARDS/index.json" ] || kinema tokenizer encode physics --n 10000 --scenario all \
  --split id --seed 0 --tokenizer "$TOK" --out "$SHARDS" --threads 2
train() {  # $1 = block, $2 = name
  kinema train lm --data "$SHARDS" --tokenizer "$TOK" --preset small --block "$1" \
    --cond-frames 2 --steps "$STEPS" --batch-size 16 --lr 1e-3 --warmup 100 --ema 0.999 \
    --precision bf16 --save-every 100 --seed 0 --threads 1 --out "runs/$2"
}
train 1x1x16 lm-physics-nbp &
train 1x1x1 lm-physics-ntp &
wait
for m in nbp ntp; do
  kinema eval physics --model "runs/lm-physics-$m/model" --scenario all --split id --n 256 \
    --json "runs/lm-physics-$m/eval-physics-id.json"
done
