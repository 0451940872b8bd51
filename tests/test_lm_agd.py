"""Alternating gradient descent: one task per step (no padding), the task mixture and the
image / video curriculum, determinism, rank split, resume, and a tiny multitask model
training through the shared trainer."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from kinema.data import collate
from kinema.errors import KinemaError
from kinema.lm import TokenLM, preset
from kinema.lm.agd import AGDBatchSampler, Curriculum, agd_sampler
from kinema.lm.data import MultitaskDataset
from kinema.lm.vocab import Vocabulary
from kinema.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


class Items(Dataset):
    """Items that only carry their task."""

    def __init__(self, counts: dict[str, int], image_tasks=("t2i",)):
        self.item_tasks = [t for t, n in counts.items() for _ in range(n)]
        self.image_tasks = set(image_tasks)

    def __len__(self):
        return len(self.item_tasks)

    def __getitem__(self, i):
        return {"task": self.item_tasks[i], "index": i}


COUNTS = {"t2i": 7, "t2v": 11, "v2a": 5, "inpaint": 9}


def sampler(steps: int = 200, **kw) -> AGDBatchSampler:
    opts = dict(global_batch=4, steps=steps, seed=0)
    return AGDBatchSampler(Items(COUNTS), **{**opts, **kw})


def test_every_batch_is_one_task():
    data = Items(COUNTS)
    s = sampler()
    batches = list(s)
    assert len(batches) == len(s) == 200
    for step, batch in enumerate(batches):
        tasks = {data.item_tasks[i] for i in batch}
        assert tasks == {s.task_at(step)} and len(batch) == 4


def test_task_items_cover_the_task_before_repeating():
    data = Items(COUNTS)
    s = sampler(steps=400)
    seen: dict[str, list[int]] = {}
    for step, batch in enumerate(s):
        seen.setdefault(s.task_at(step), []).extend(batch)
    for task, items in seen.items():
        n = COUNTS[task]
        assert all(data.item_tasks[i] == task for i in items)
        for e in range(len(items) // n):  # each run of n consecutive draws is a permutation
            assert len(set(items[e * n : (e + 1) * n])) == n


def test_mixture_proportions():
    s = sampler(steps=8000, curriculum=None, weights={"t2i": 1, "t2v": 3, "v2a": 0, "inpaint": 4})
    drawn = [s.task_at(i) for i in range(8000)]
    freq = {t: drawn.count(t) / len(drawn) for t in COUNTS}
    assert freq["v2a"] == 0
    for task, want in (("t2i", 1 / 8), ("t2v", 3 / 8), ("inpaint", 4 / 8)):
        assert abs(freq[task] - want) < 0.02, (task, freq)


def test_curriculum_switches_at_a_quarter_of_the_steps():
    steps = 8000
    s = sampler(steps=steps, weights={"t2i": 1, "t2v": 1, "v2a": 1, "inpaint": 2})
    switch = steps // 4
    image = lambda step: s.probabilities(step)["t2i"]  # noqa: E731
    assert image(0) == pytest.approx(0.9) and image(switch - 1) == pytest.approx(0.9)
    assert image(switch) == pytest.approx(0.1) and image(steps - 1) == pytest.approx(0.1)
    # inside the video group the weights decide: 1 : 1 : 2
    assert s.probabilities(0)["inpaint"] == pytest.approx(0.1 / 2)
    assert s.probabilities(switch)["t2v"] == pytest.approx(0.9 / 4)
    before = [s.task_at(i) == "t2i" for i in range(switch)]
    after = [s.task_at(i) == "t2i" for i in range(switch, steps)]
    assert abs(sum(before) / len(before) - 0.9) < 0.03
    assert abs(sum(after) / len(after) - 0.1) < 0.02
    # a custom schedule, and a dataset without image tasks ignores the curriculum
    c = sampler(steps=100, curriculum=Curriculum(switch=0.5, image_before=1.0, image_after=0.0))
    assert {c.task_at(i) for i in range(50)} == {"t2i"}
    assert "t2i" not in {c.task_at(i) for i in range(50, 100)}
    plain = AGDBatchSampler(Items({"t2v": 3, "v2a": 3}), global_batch=2, steps=10)
    assert plain.probabilities(0) == {"t2v": 0.5, "v2a": 0.5}


def test_deterministic_and_seeded():
    assert list(sampler(seed=5)) == list(sampler(seed=5))
    assert list(sampler(seed=5)) != list(sampler(seed=6))


def test_resume_position_and_rank_split():
    full = list(sampler())
    s = sampler()
    s.set_position(0, 37)
    assert list(s) == full[37:] and len(s) == 200 - 37
    # two ranks x two micro-batches: together the step's global batch, same for any W
    ranks = [sampler(global_batch=8, micro_batch=2, num_replicas=2, rank=r) for r in (0, 1)]
    one = sampler(global_batch=8)
    it = [iter(r) for r in ranks]
    for step in range(20):
        parts = [next(it[r]) + next(it[r]) for r in (0, 1)]  # grad_accum = 2
        assert sorted(parts[0] + parts[1]) == sorted(one.step_items(step))
    # a further epoch continues the global step count (in the curriculum's last phase)
    s.set_position(1, 0)
    assert next(iter(s)) == s.step_items(200) and s.probabilities(200)["t2i"] == 0.1


def test_agd_errors():
    with pytest.raises(KinemaError, match="item_tasks"):
        AGDBatchSampler(list(range(4)), global_batch=2, steps=3)
    with pytest.raises(KinemaError, match="weights"):
        sampler(weights={"dance": 1})
    with pytest.raises(KinemaError, match="multiple"):
        sampler(global_batch=5, micro_batch=2)


# ---------------------------------------------------------------------- trainer
VOCAB = Vocabulary(visual_size=16, audio_levels=2, audio_codebook=8)
TASKS = ["t2i", "t2v", "i2v", "inpaint", "v2a", "a2v"]


class PatternClips(Dataset):
    """Learnable clips: clip c's tokens are ``(c + t + y + x) % 16``, its audio
    ``(c + j) % 16``, its text a fixed random vector."""

    def __init__(self, n: int = 8):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, c):
        t, y, x = torch.meshgrid(torch.arange(2), torch.arange(4), torch.arange(4), indexing="ij")
        g = torch.Generator().manual_seed(c)
        return {
            "tokens": (c + t + y + x) % 16,
            "audio_tokens": (c + torch.arange(8)) % 16,
            "text": torch.randn(2, 8, generator=g),
            "text_mask": torch.ones(2, dtype=torch.bool),
        }


def multitask_setup():
    cfg = preset(
        "tiny",
        vocabulary=VOCAB,
        audio_frames=4,
        text_dim=8,
        max_text_len=2,
        latent_shape=(2, 4, 4),
        block_shape=(1, 1, 4),
    )
    torch.manual_seed(0)
    return TokenLM(cfg), MultitaskDataset(PatternClips(), cfg, TASKS)


def train_config(out, **kw) -> TrainConfig:
    opts = dict(
        steps=40,
        batch_size=4,
        lr=3e-3,
        warmup_steps=2,
        log_every=1,
        save_every=0,
        keep_last=0,
        out_dir=str(out),
        device="cpu",
        tensorboard=False,
        progress=False,
    )
    return TrainConfig(**{**opts, **kw})


def test_multitask_model_trains_through_the_trainer_with_agd(tmp_path):
    model, data = multitask_setup()
    seen: list[set[str]] = []
    original = model.loss

    def loss(batch):  # every batch: one task, stacked tensors (no padding, no ragged lists)
        seen.append(set(batch["task"]))
        assert all(isinstance(batch[k], torch.Tensor) for k in ("prefix_ids", "target"))
        return original(batch)

    model.loss = loss
    trainer = Trainer(
        model,
        data,
        train_config(tmp_path / "run"),
        collate_fn=collate,
        batch_sampler=agd_sampler(weights={t: 1.0 for t in TASKS}),
    )
    assert isinstance(trainer.sampler, AGDBatchSampler)
    result = trainer.fit()
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 40 and all(len(s) == 1 for s in seen)
    assert len(set().union(*seen)) >= 5  # the mixture visits (almost) every task
    first, last = sorted(losses[:5])[2], sorted(losses[-5:])[2]  # medians: a task seen for
    assert last < first - 1.0, losses  # the first time late in the run spikes the loss


def test_agd_training_resumes_exactly(tmp_path):
    def run(out, until=None, resume=False):
        model, data = multitask_setup()
        cfg = train_config(out, steps=8, save_every=4, resume=resume)
        trainer = Trainer(model, data, cfg, collate_fn=collate, batch_sampler=agd_sampler())
        return [row["loss"] for row in trainer.fit(until_step=until).history]

    full = run(tmp_path / "a")
    part = run(tmp_path / "b", until=4) + run(tmp_path / "b", resume=True)
    assert part == full
