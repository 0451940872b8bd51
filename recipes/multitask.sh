#!/usr/bin/env bash
# VideoPoet multitask on the physics data (issue "VideoPoet multitask"): an audio codec, the
# multitask token LM (t2v, i2v, continuation, inpaint, outpaint, stylize:edges, v2a; AGD
# batches of one task, captions through all-MiniLM-L6-v2), a 2x super-resolution
# transformer (32x32 -> 64x64 tokens of the same clips), then the per-task checks.
# 17-frame 64x64 clips -> 5 x 16 x 16 tokens of the shipped tokenizer-cpu-fsq; audio
# 84 code frames x 4 levels (1.68 s at 50 Hz) per clip.
#   bash recipes/multitask.sh
# This project's run (2026-12-03, 2-core AMX Xeon): codec 1,000 steps (13 min, 1 thread),
# SR 800 steps (~37 min, 1 thread, next to the codec), shards 194 s (2 threads), LM 700 steps
# of batch 8 in 33 min (2 threads, bf16); shipped as kinema/assets/models/lm-physics-multitask
# (fp16 LM, codec inside, tokenizer.json naming tokenizer-cpu-fsq). See BENCHMARKS.md
# "VideoPoet multitask" for the figures and their limits.
set -euo pipefail
TOK=${TOK:-tokenizer-cpu-fsq}
STEPS=${STEPS:-700}
N=${N:-2000}
TASKS=t2v:1,i2v:1,continuation:1,inpaint:1,outpaint:1,stylize:edges:1,v2a:1
# the codec: this project stopped a 1,500-step run after step 1,000 (the loss had gone flat)
# and used that checkpoint's config.json + model.safetensors as runs/audio-codec/model
[ -f runs/audio-codec/model/config.json ] || kinema train audio-codec --preset cpu \
  --steps 1500 --batch-size 8 --save-every 250 --out runs/audio-codec --threads 1
[ -f shards/physics-mt/index.json ] || kinema tokenizer encode physics --n "$N" \
  --scenario all --split id --seed 0 --controls edges --audio-codec runs/audio-codec/model \
  --audio-frames 84 --tokenizer "$TOK" --out shards/physics-mt --threads 2
kinema train lm --data shards/physics-mt --tokenizer "$TOK" --preset small --block 1x1x16 \
  --tasks "$TASKS" --set max_text_len=16 --steps "$STEPS" --batch-size 8 --lr 1e-3 \
  --warmup 50 --ema 0.995 --precision auto --save-every 100 --seed 0 --threads 2 \
  --out runs/mt-physics $([ "${RESUME:-0}" = 1 ] && echo --resume)
# super-resolution: the same clips at two sizes
for r in 32 64; do
  [ -f "shards/physics-fsq-$r/index.json" ] || kinema tokenizer encode physics --n 3000 \
    --scenario all --split id --seed 0 --resolution "$r" --tokenizer "$TOK" \
    --out "shards/physics-fsq-$r" --threads 1
done
[ -f runs/sr-physics/model/config.json ] || kinema train sr --lr-data shards/physics-fsq-32 \
  --hr-data shards/physics-fsq-64 --preset small --steps 800 --batch-size 8 --lr 1e-3 \
  --warmup 50 --ema 0.995 --save-every 100 --seed 0 --threads 1 --out runs/sr-physics
# per-task checks on held-out clips (seed 1000), SR vs bicubic, 10x long video
kinema eval multitask --model runs/mt-physics/model --n 32 --sr-model runs/sr-physics/model \
  --long 13 --long-n 8 --threads 2 --json runs/mt-physics/eval-multitask.json
