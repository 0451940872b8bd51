#!/usr/bin/env bash
# VideoPoet multitask on the physics data (issue "VideoPoet multitask"): an audio codec, the
# multitask token LM (t2v, i2v, continuation, inpaint, outpaint, stylize:edges, v2a; AGD
# batches of one task, captions through all-MiniLM-L6-v2), a 2x super-resolution
# transformer (32x32 -> 64x64 tokens of the same clips), then the per-task checks.
# 17-frame 64x64 clips -> 5 x 16 x 16 tokens of the shipped tokenizer-cpu-fsq; audio
# 84 code frames x 4 levels (1.68 s at 50 Hz) per clip. The clips: the paper's three
# scenarios and `bounce` (a ball in a box: what the long-video check extends).
#   bash recipes/multitask.sh
#
# How the shipped lm-physics-multitask came about (BENCHMARKS.md "VideoPoet multitask"):
#   stage A (2026-12-03, 2-core AMX Xeon): STAGE=A below, 700 steps from scratch on shards
#     of the three scenarios, encoded with that day's codec (which rendered no clicks);
#   stage B (2026-12-04, 2-core AMD EPYC): the codec of step 1 (three runs, 22:00-22:26 on
#     2 threads), shards of step 2 (2,000 + 1,000 bounce clips, 173 s + 114 s), then
#     STAGE=B: 1,200 steps from stage A's model (~5 s a step on 2 threads, bf16);
#   stage C (2026-12-05, same machine): STAGE=C, next-token (--block 1x1x1) from stage B's
#     model: 500 steps on stage B's mixture (continuation:3), then 700 continuation-heavy
#     steps with 3,000 more bounce clips (~3-4 s a step); next-block decoding samples the 16
#     cells of a row apart, which broke the ball into pieces in long videos. Its
#     runs/mt-ntp2/model is what ships (LM weights saved in bf16, the codec of step 1 inside).
# Running STAGE=A, B, then C here uses this codec's shards for all.
set -euo pipefail
TOK=${TOK:-tokenizer-cpu-fsq}
STAGE=${STAGE:-C}
# 1. the audio codec: isolated clicks (quantizer bypassed), isolated clicks with the RVQ,
#    then the sound with 4 extra clicks per clip; each run from the last one's weights
[ -f runs/audio-codec/model/config.json ] || kinema train audio-codec --preset cpu \
  --click-steps 400 --click-vq-steps 300 --steps 2000 --overlay-clicks 4 --batch-size 8 \
  --out runs/audio-codec --threads 2
kinema eval audio-codec --model runs/audio-codec/model --n 64 --json runs/audio-codec/eval.json
# 2. shards with edge controls and audio tokens
for spec in all:2000:0:shards/physics-mt bounce:1000:0:shards/physics-mt-bounce \
    bounce:3000:1:shards/physics-mt-bounce2; do
  IFS=: read -r scenario n seed dir <<< "$spec"
  [ -f "$dir/index.json" ] || kinema tokenizer encode physics --n "$n" --scenario "$scenario" \
    --split id --seed "$seed" --controls edges --audio-codec runs/audio-codec/model \
    --audio-frames 84 --tokenizer "$TOK" --out "$dir" --threads 2
done
# 3. the LM: every stage shares these flags (the small preset, batch 8, EMA, 2 threads)
train_lm() {
  kinema train lm --tokenizer "$TOK" --preset small --set max_text_len=16 --batch-size 8 \
    --ema 0.995 --precision auto --threads 2 "$@"
}
MT=shards/physics-mt
BOUNCE=shards/physics-mt-bounce
if [ "$STAGE" = A ]; then
  train_lm --data "$MT" --block 1x1x16 \
    --tasks t2v:1,i2v:1,continuation:1,inpaint:1,outpaint:1,stylize:edges:1,v2a:1 \
    --steps 700 --lr 1e-3 --warmup 50 --save-every 100 --seed 0 --out runs/mt-physics
  MODEL=runs/mt-physics/model
elif [ "$STAGE" = B ]; then
  # stage A's model (STAGE=A above; the one used was lm-physics-multitask up to commit b93d279)
  INIT=${INIT:-runs/mt-physics/model}
  train_lm --data "$MT" --data "$BOUNCE" --block 1x1x16 \
    --tasks t2v:1,i2v:1,continuation:2,inpaint:1,outpaint:1,stylize:edges:1,v2a:2 \
    --steps 1200 --lr 5e-4 --warmup 50 --save-every 100 --seed 1 --init "$INIT" --out runs/mt-ft
  MODEL=runs/mt-ft/model
else
  # stage B's model (STAGE=B above; the one used was lm-physics-multitask up to commit 0db9acc)
  INIT=${INIT:-runs/mt-ft/model}
  train_lm --data "$MT" --data "$BOUNCE" --block 1x1x1 \
    --tasks t2v:1,i2v:1,continuation:3,inpaint:1,outpaint:1,stylize:edges:1,v2a:2 \
    --steps 500 --lr 5e-4 --warmup 30 --save-every 50 --seed 3 --init "$INIT" --out runs/mt-ntp
  train_lm --data "$MT" --data "$BOUNCE" --data "${BOUNCE}2" --block 1x1x1 \
    --tasks t2v:1,i2v:1,continuation:6,inpaint:1,outpaint:1,stylize:edges:1,v2a:1 \
    --steps 700 --lr 3e-4 --warmup 20 --save-every 50 --seed 4 --init runs/mt-ntp/model \
    --out runs/mt-ntp2
  MODEL=runs/mt-ntp2/model
fi
# 4. super-resolution: the same clips at two sizes (one 4,375-way softmax, the small preset)
for r in 32 64; do
  [ -f "shards/physics-fsq-$r/index.json" ] || kinema tokenizer encode physics --n 3000 \
    --scenario all --split id --seed 0 --resolution "$r" --tokenizer "$TOK" \
    --out "shards/physics-fsq-$r" --threads 1
done
[ -f runs/sr-physics/model/config.json ] || kinema train sr --lr-data shards/physics-fsq-32 \
  --hr-data shards/physics-fsq-64 --preset small --steps 800 --batch-size 8 --lr 1e-3 \
  --warmup 50 --ema 0.995 --save-every 100 --seed 0 --threads 1 --out runs/sr-physics
# 5. per-task checks on held-out clips (seed 1000), SR vs bicubic, 10x long video of bounce
kinema eval multitask --model "$MODEL" --n 32 --sr-model runs/sr-physics/model \
  --long 13 --long-n 8 --threads 2 --json "$MODEL/../eval-multitask.json"
