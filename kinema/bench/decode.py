"""decode-nbp and decode-hf (BENCHMARKS.md): one static-KV-cache decode loop, two block shapes.

Setup of the NBP paper's K600 frame prediction: 512 prefix tokens (2 given latent frames of
16 x 16), 768 generated tokens (3 latent frames), batch 1, a 64,000-token vocabulary,
temperature 1 sampling without top-k/top-p.
  NBP   kinema TokenLM, 1x1x16 blocks: 48 forward passes
  NTP   the same weights with 1x1x1 blocks: 768 forward passes
  HF    transformers LlamaForCausalLM.generate with an identical Llama config
        (same dims, vocab, MLP, rotary base; use_cache=True; do_sample, top_k=0)
Each configuration runs A B C A B C ... ``--repeats`` times after a warm-up; the figure is
the median wall time. bf16 rows keep the weights in bf16 (no autocast); on a CPU kinema keeps
its KV cache in fp32 for them (:func:`kinema.nn.kv_cache.decode_cache_dtype`), HF its own in bf16.

Usage:
    kinema bench decode [--sizes 10m,100m] [--dtypes fp32,bf16] [--repeats 5]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from kinema.bench.common import default_dtypes, emit, header, parse_args, time_interleaved
from kinema.lm import TokenLM, TokenLMConfig
from kinema.sample import generate

SIZES = {  # non-embedding parameters: ~10.6M and ~85M; with the 64K vocab tables on top
    "10m": dict(dim=384, n_layers=6, n_heads=6),
    "100m": dict(dim=768, n_layers=12, n_heads=12),
}
VOCAB = 64_000


def lm(size: str, block: tuple[int, int, int]) -> TokenLM:
    cfg = TokenLMConfig(
        vocab_size=VOCAB,
        latent_shape=(3, 16, 16),
        block_shape=block,
        cond_frames=2,
        cond_drop_prob=0.0,
        **SIZES[size],
    )
    torch.manual_seed(0)
    return TokenLM(cfg).eval()


def hf_twin(model: TokenLM):
    """A LlamaForCausalLM with the same dimensions as ``model``'s transformer core."""
    from transformers import LlamaConfig, LlamaForCausalLM

    core = model.config.transformer_config()
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=core.dim,
        intermediate_size=core.resolved_mlp_hidden,
        num_hidden_layers=core.n_layers,
        num_attention_heads=core.n_heads,
        num_key_value_heads=core.n_kv_heads or core.n_heads,
        max_position_embeddings=model.config.seq_len + 16,
        rms_norm_eps=core.norm_eps,
        rope_theta=core.rope_theta,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


@torch.inference_mode()
def hf_generate(model, ids: torch.Tensor) -> None:
    model.generate(
        ids,
        max_new_tokens=768,
        min_new_tokens=768,
        do_sample=True,
        top_k=0,
        use_cache=True,
        pad_token_id=0,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10m,100m")
    ap.add_argument(
        "--dtypes", default=default_dtypes(), help="default: bf16 too where it is native"
    )
    args = parse_args(ap, argv)
    emit(header("512 prefix + 768 new tokens, batch 1"))
    emit(
        "\n| model | dtype | NBP 1x1x16 (s) | NTP (s) | HF generate (s) | NBP vs NTP | NTP vs HF |"
    )
    emit("|---|---|---|---|---|---|---|")
    prefix = torch.randint(0, VOCAB, (1, 2, 16, 16), generator=torch.Generator().manual_seed(1))
    for size in args.sizes.split(","):
        for dname in args.dtypes.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dname]
            nbp, ntp = lm(size, (1, 1, 16)), lm(size, (1, 1, 1))
            shared = {k: v for k, v in nbp.state_dict().items() if "start" not in k}
            ntp.load_state_dict(shared, strict=False)  # same weights but the start block
            hf = hf_twin(ntp).to(dtype)

            runs = {
                "nbp": partial(generate, nbp, 1, cond_tokens=prefix, seed=0, dtype=dtype),
                "ntp": partial(generate, ntp, 1, cond_tokens=prefix, seed=0, dtype=dtype),
                "hf": partial(hf_generate, hf, prefix.reshape(1, -1)),
            }
            med = time_interleaved(runs, args.repeats)
            n = ntp.num_parameters(exclude_embeddings=True) / 1e6
            emit(
                f"| {size} ({n:.1f}M + emb) | {dname} | {med['nbp']:.3f} | {med['ntp']:.3f} | "
                f"{med['hf']:.3f} | {med['ntp'] / med['nbp']:.1f}x | "
                f"{med['hf'] / med['ntp']:.2f}x |",
            )


if __name__ == "__main__":
    main()
