#!/usr/bin/env bash
# The physics token LMs (issue "Token LM"): NBP with 1x1x16 blocks and NTP (1x1x1) with the
# same size and budget, on tokens of the shipped FSQ tokenizer. 17-frame 64x64 clips ->
# 5 x 16 x 16 tokens; 5 given frames (2 latent frames) -> 12 predicted (3 latent frames).
# The small preset (6.8M parameters) takes ~4 s per batch of 8 on one CPU thread with bf16;
# nbp and ntp run one after the other (MODELS="nbp ntp", or one of them per run; this
# project ran MODELS=nbp, then MODELS=ntp, each next to another job: ~40 and ~50 min).
#   bash recipes/lm_physics.sh            # encode once (3,000 clips, ~5 min), then train
set -euo pipefail
TOK=${TOK:-tokenizer-cpu-fsq}
STEPS=${STEPS:-800}
MODELS=${MODELS:-nbp ntp}
SHARDS=${SHARDS:-shards/physics-fsq}
[ -f "$SHARDS/index.json" ] || kinema tokenizer encode physics --n 3000 --scenario all \
  --split id --seed 0 --tokenizer "$TOK" --out "$SHARDS" --threads 1
train() {  # $1 = block, $2 = name
  kinema train lm --data "$SHARDS" --tokenizer "$TOK" --preset small --block "$1" \
    --cond-frames 2 --steps "$STEPS" --batch-size 8 --lr 1e-3 --warmup 50 --ema 0.995 \
    --precision auto --save-every 100 --seed 0 --threads 1 --out "runs/$2" \
    $([ "${RESUME:-0}" = 1 ] && echo --resume)
}
IFS=' ' read -r -a models <<< "$MODELS"
for m in "${models[@]}"; do
  if [ "$m" = nbp ]; then train 1x1x16 lm-physics-nbp; else train 1x1x1 lm-physics-ntp; fi
done
# 86 clips per scenario and split: 258 in distribution, 258 out of distribution
for m in "${models[@]}"; do
  kinema eval physics --model "runs/lm-physics-$m/model" --scenario all --split all --n 86 \
    --threads 1 --json "runs/lm-physics-$m/eval-physics.json"
done
# nbp shipped as kinema/assets/models/lm-physics-nbp (fp16 weights, card, tokenizer.json
# naming tokenizer-cpu-fsq); ntp is kept out of the package for size (see BENCHMARKS.md)
