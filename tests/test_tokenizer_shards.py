"""Pre-tokenized shards: what is read back equals what the tokenizer gives; resume; errors."""

from __future__ import annotations

import json

import pytest
import torch

from kinema.data import PhysicsDataset
from kinema.errors import KinemaError
from kinema.tokenizer import Tokenizer, TokenizerConfig
from kinema.tokenizer.shards import ConcatShards, ShardDataset, encode_dataset


def small(**kw) -> Tokenizer:
    cfg = dict(
        spatial_compression=4,
        num_frames=5,
        resolution=32,
        base_channels=16,
        channel_mult=(1, 2, 2),
        fsq_levels=(8, 5, 5, 5),
    )
    return Tokenizer(TokenizerConfig(**{**cfg, **kw})).eval()


@pytest.fixture
def physics():
    return PhysicsDataset(length=10, resolution=32, num_frames=5, cond_frames=1, seed=4)


def test_tokens_round_trip_with_ground_truth(tmp_path, physics, one_thread):
    tok = small()
    out = encode_dataset(
        tok,
        physics,
        tmp_path / "s",
        batch_size=3,
        shard_size=4,
        precision="fp32",
        source={"dataset": "physics"},
    )
    ds = ShardDataset(out)
    assert len(ds) == 10 and ds.item_shape == (2, 8, 8) and ds.vocab_size == 1000
    assert sorted(p.name for p in out.iterdir())[:2] == ["index.json", "shard_00000.jsonl"]
    assert len(ds.index["shards"]) == 3
    with torch.no_grad():
        want = tok.encode(torch.stack([physics[i]["video"] for i in range(10)]))
    for i in (0, 3, 4, 9):  # shard borders
        item = ds[i]
        assert item["tokens"].dtype == torch.long
        assert torch.equal(item["tokens"], want[i])
        ref = physics[i]
        torch.testing.assert_close(item["positions"], ref["positions"], equal_nan=True)
        assert item["caption"] == ref["caption"] and item["scenario"] == ref["scenario"]
    assert json.loads((out / "index.json").read_text())["source"] == {"dataset": "physics"}
    with pytest.raises(KinemaError, match="already holds shards"):
        encode_dataset(tok, physics, out)


def test_kl_latents_and_resume(tmp_path, physics, one_thread):
    tok = small(quantizer="kl", kl_channels=4)
    out = tmp_path / "kl"
    encode_dataset(tok, physics, out, num_items=8, shard_size=4, precision="fp32")
    first = (out / "shard_00000.safetensors").read_bytes()
    (out / "index.json").unlink()  # as if the run had died before finishing
    (out / "shard_00001.safetensors").unlink()
    encode_dataset(tok, physics, out, num_items=8, shard_size=4, precision="fp32")
    assert (out / "shard_00000.safetensors").read_bytes() == first  # kept, not redone
    ds = ShardDataset(out)
    with torch.no_grad():
        want = tok.encode(torch.stack([physics[i]["video"] for i in range(8)]))
    assert ds[5]["latents"].dtype == torch.float32
    torch.testing.assert_close(ds[5]["latents"], want[5], atol=2e-3, rtol=1e-3)  # float16


def test_not_a_shard_folder(tmp_path):
    with pytest.raises(KinemaError, match="not a shard folder"):
        ShardDataset(tmp_path)


def test_concat_shards_reads_folders_in_order_and_rejects_mismatches(tmp_path, physics, one_thread):
    tok = small()
    a = encode_dataset(tok, physics, tmp_path / "a", num_items=3, precision="fp32")
    b = encode_dataset(tok, physics, tmp_path / "b", num_items=5, shard_size=2, precision="fp32")
    both = ConcatShards([ShardDataset(a), ShardDataset(b)])
    assert len(both) == 8 and both.item_shape == (2, 8, 8) and both.kind == "tokens"
    for i, (part, j) in enumerate([(a, 0), (a, 2), (b, 0), (b, 4)]):
        k = (0, 2, 3, 7)[i]
        assert torch.equal(both[k]["tokens"], ShardDataset(part)[j]["tokens"])
    with pytest.raises(IndexError):
        both[8]
    kl = encode_dataset(small(quantizer="kl", kl_channels=4), physics, tmp_path / "kl", num_items=2,
                        precision="fp32")  # fmt: skip
    with pytest.raises(KinemaError, match="differ in kind"):
        ConcatShards([ShardDataset(a), ShardDataset(kl)])
