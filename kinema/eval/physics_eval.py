"""The physics benchmark end to end (DATA.md): score generated continuations of held-out
clips with the velocity error, next to the ground-truth floor at the same resolution.

One scorer (:class:`PhysicsScorer`) serves two entry points:
- :func:`evaluate_physics_videos` / :func:`evaluate_physics_folder`: any model's outputs,
  with the ground truth as ``meta.jsonl`` records (the format ``kinema data make`` writes);
- :func:`evaluate_physics_model`: a kinema model folder (token LM or pyramid flow); held-out
  clips are rendered with :data:`EVAL_SEED` and their first ``cond_frames`` frames
  condition the model.

Only the red ball (ball 0) is tracked, as in the paper's parser; intervals count from the
first generated frame on (both ends generated).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kinema.data.physics import SCENARIOS, SPLITS, PhysicsDataset, Trajectory, caption, render
from kinema.errors import KinemaError
from kinema.eval.physics import METHODS, interval_errors
from kinema.utils.jsonable import jsonable

if TYPE_CHECKING:
    from kinema.sample.video import Generator
    from kinema.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# Item i of PhysicsDataset is a pure function of (seed, split, scenario, i); training data
# defaults to seed 0 (`kinema data make`, `kinema train ... --data physics`), so held-out
# clips use another seed (the same one `kinema tokenizer eval --data` uses).
EVAL_SEED = 1000
DT = 0.1  # seconds per frame of the benchmark (DATA.md)
COND_FRAMES = 5  # the benchmark's conditioning frames for 17-frame clips (DATA.md)
MAX_CLIPS = 10_000  # per scenario and split
META = "meta.jsonl"


@dataclass
class PhysicsRow:
    """Velocity error of one scenario x split x detector.

    error, floor: mean ``|v - v_true|`` (world units/s) over the scored intervals of the
        evaluated videos / of the ground truth rendered at the same size; None: none scored.
    clips: clips evaluated; clips_scored: those with at least one scored interval.
    intervals: scored intervals (after the conditioning frames, ball fully in view at both
        ends, after the collision); dropped: later intervals the protocol excludes.
    missed: intervals the protocol keeps but where the detector finds no ball in the
        evaluated video; they are left out of ``error``, so a high count flags a model that
        loses the ball rather than a good one.
    floor_intervals: scored intervals of the ground truth.
    """

    scenario: str
    split: str
    detector: str
    error: float | None
    floor: float | None
    clips: int
    clips_scored: int
    intervals: int
    dropped: int
    missed: int
    floor_intervals: int


@dataclass
class PhysicsResults:
    """Rows ordered by scenario, split, detector; ``source`` says what was evaluated."""

    rows: list[PhysicsRow]
    cond_frames: int
    dt: float
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable (non-finite floats become null)."""
        return jsonable(asdict(self))

    def markdown(self) -> str:
        """A markdown table: one line per row."""

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.4f}"

        lines = [
            "| scenario | split | detector | error | ground-truth floor | clips | intervals "
            "| missed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.scenario} | {r.split} | {r.detector} | {num(r.error)} | {num(r.floor)} "
                f"| {r.clips} | {r.intervals} | {r.missed} |"
            )
        return "\n".join(lines)


@dataclass
class _Tally:
    errors: list[np.ndarray] = field(default_factory=list)
    floor: list[np.ndarray] = field(default_factory=list)
    clips: int = 0
    clips_scored: int = 0
    dropped: int = 0
    missed: int = 0


class PhysicsScorer:
    """Accumulates velocity errors clip by clip (constant memory in the number of videos)
    per scenario, split and detector."""

    def __init__(self, cond_frames: int, dt: float = DT, detectors: Sequence[str] = METHODS):
        bad = [d for d in detectors if d not in METHODS]
        if bad or not detectors:
            raise KinemaError(
                f"unknown detector {', '.join(bad) or '(none)'}; allowed: {', '.join(METHODS)}"
            )
        if not (isinstance(dt, int | float) and 0 < dt <= 1):
            raise KinemaError(f"dt must be in (0, 1] seconds, got {dt}")
        self.cond_frames, self.dt, self.detectors = cond_frames, float(dt), tuple(detectors)
        self._tallies: dict[tuple[str, str, str], _Tally] = {}

    def add(
        self,
        video: np.ndarray,
        truth: Trajectory,
        split: str,
        truth_video: np.ndarray | None = None,
        name: str = "video",
    ) -> None:
        """Score one clip.

        video: uint8 ``(T, H, W, 3)``, the first ``cond_frames`` given, the rest generated.
        truth: its ground truth (``T`` frames); truth_video: the ground truth rendered at
        ``(H, W)`` (rendered here when None), scored the same way for the floor.
        """
        t = len(truth.positions)
        if video.ndim != 4 or video.shape[-1] != 3 or len(video) != t:
            raise KinemaError(
                f"{name}: expected uint8 ({t}, H, W, 3) frames as in its ground truth, "
                f"got {video.shape}"
            )
        if not 1 <= self.cond_frames <= t - 2:
            raise KinemaError(
                f"cond_frames must be in [1, {t - 2}] for {t}-frame clips, got {self.cond_frames}"
            )
        if truth_video is None:
            truth_video = render(truth, *video.shape[1:3])
        pos, radius = truth.positions[:, 0], float(truth.radii[0])
        kw = dict(collision_time=truth.collision_time, start_frame=self.cond_frames)
        for det in self.detectors:
            err, scored, seen = interval_errors(video, pos, radius, self.dt, method=det, **kw)
            ferr, fscored, fseen = interval_errors(
                truth_video, pos, radius, self.dt, method=det, **kw
            )
            tally = self._tallies.setdefault((truth.scenario, split, det), _Tally())
            used = scored & seen
            tally.errors.append(err[used])
            tally.floor.append(ferr[fscored & fseen])
            tally.clips += 1
            tally.clips_scored += bool(used.any())
            tally.dropped += int((~scored[self.cond_frames :]).sum())
            tally.missed += int((scored & ~seen).sum())

    def results(self, source: dict | None = None) -> PhysicsResults:
        """Pooled means: every scored interval of every clip weighs the same (DATA.md)."""

        def mean(parts: list[np.ndarray]) -> float | None:
            x = np.concatenate(parts)
            return float(x.mean()) if len(x) else None

        def order(key: tuple[str, str, str]) -> tuple[int, int, int]:
            s, sp, d = key
            return SCENARIOS.index(s), SPLITS.index(sp), self.detectors.index(d)

        rows = [
            PhysicsRow(
                *key,
                error=mean(t.errors),
                floor=mean(t.floor),
                clips=t.clips,
                clips_scored=t.clips_scored,
                intervals=sum(len(e) for e in t.errors),
                dropped=t.dropped,
                missed=t.missed,
                floor_intervals=sum(len(e) for e in t.floor),
            )
            for key, t in sorted(self._tallies.items(), key=lambda kv: order(kv[0]))
        ]
        return PhysicsResults(rows, self.cond_frames, self.dt, dict(source or {}))


def choices(value: str, allowed: Sequence[str], option: str) -> tuple[str, ...]:
    """``"all"`` -> every allowed value; else the value itself, checked."""
    if value == "all":
        return tuple(allowed)
    if value not in allowed:
        raise KinemaError(f"unknown {option} '{value}'; allowed: all, {', '.join(allowed)}")
    return (value,)


def trajectory_from_meta(rec: dict, where: str = "meta record") -> tuple[Trajectory, str]:
    """A ``meta.jsonl`` record (as ``kinema data make`` writes) -> its ground truth and split.

    Needs ``scenario``, ``positions (T, balls, 2)`` (null for absent balls) and ``radii``;
    ``num_balls``, ``collision_time`` and ``split`` (default ``id``) are optional.
    """
    missing = [k for k in ("scenario", "positions", "radii") if k not in rec]
    if missing:
        raise KinemaError(f"{where}: missing {', '.join(missing)}")
    if rec["scenario"] not in SCENARIOS:
        raise KinemaError(
            f"{where}: unknown scenario '{rec['scenario']}'; allowed: {', '.join(SCENARIOS)}"
        )
    split = rec.get("split", "id")
    if split not in SPLITS:
        raise KinemaError(f"{where}: unknown split '{split}'; allowed: {', '.join(SPLITS)}")
    pos = np.array(rec["positions"], dtype=np.float64)  # null -> NaN
    radii = np.atleast_1d(np.array(rec["radii"], dtype=np.float64))
    if pos.ndim == 2:  # one ball: (T, 2)
        pos = pos[:, None]
    balls = int(rec.get("num_balls", 1))
    if pos.ndim != 3 or pos.shape[-1] != 2 or not 1 <= balls <= min(pos.shape[1], len(radii)):
        raise KinemaError(f"{where}: positions must be (T, balls, 2), got {pos.shape}")
    pos, radii = pos[:, :balls], radii[:balls]
    if not (np.isfinite(pos).all() and np.isfinite(radii).all() and (radii > 0).all()):
        raise KinemaError(f"{where}: positions and radii must be finite numbers")
    ct = rec.get("collision_time")
    traj = Trajectory(
        rec["scenario"],
        pos,
        np.full_like(pos, np.nan),  # the metric differences positions; velocities unused
        radii,
        collision_time=None if ct is None else float(ct),
    )
    return traj, split


def evaluate_physics_videos(
    videos: Iterable[np.ndarray],
    metas: Sequence[dict],
    *,
    cond_frames: int,
    dt: float | None = None,
    detectors: Sequence[str] = METHODS,
    source: dict | None = None,
) -> PhysicsResults:
    """Velocity error of ``videos`` (uint8 ``(T, H, W, 3)`` each, possibly a lazy iterable)
    against the ground truth in ``metas`` (``meta.jsonl`` records, same order), with the
    floor of the ground truth rendered at each video's size.

    cond_frames: leading given frames of every video (not scored). dt: seconds per frame
    (default: ``1 / fps`` of the records, else 0.1).
    """
    if dt is None:
        fps = {m.get("fps") for m in metas} - {None}
        if len(fps) > 1:
            raise KinemaError(f"the records mix frame rates {sorted(fps)}; pass dt")
        dt = 1.0 / fps.pop() if fps else DT
    scorer = PhysicsScorer(cond_frames, dt, detectors)
    for i, (video, rec) in enumerate(itertools.zip_longest(videos, metas)):
        if video is None or rec is None:
            raise KinemaError(f"{len(metas)} ground-truth records but a different number of videos")
        where = rec.get("file", f"record {i}")
        truth, split = trajectory_from_meta(rec, where)
        scorer.add(video, truth, split, name=where)
    log.info("scored %d videos", len(metas))
    return scorer.results(source)


def read_meta(folder: str | os.PathLike) -> list[dict]:
    """The records of ``folder/meta.jsonl``; one-line errors for a missing or bad file."""
    path = Path(folder) / META
    if not Path(folder).is_dir():
        raise KinemaError(f"'{folder}' is not a folder")
    if not path.is_file():
        raise KinemaError(f"'{folder}' has no {META} (the ground truth `kinema data make` writes)")
    records = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise KinemaError(f"{path} line {k}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict) or "file" not in rec:
            raise KinemaError(f"{path} line {k}: expected an object with a 'file' key")
        records.append(rec)
    if not records:
        raise KinemaError(f"{path} lists no videos")
    return records


def evaluate_physics_folder(
    folder: str | os.PathLike,
    *,
    scenario: str = "all",
    split: str = "all",
    n: int | None = None,
    cond_frames: int | None = None,
    detectors: Sequence[str] = METHODS,
) -> PhysicsResults:
    """Score the videos of a folder listed in its ``meta.jsonl`` (``file`` relative to the
    folder), at most ``n`` per scenario and split.

    cond_frames: default the records' ``cond_frames`` (``kinema data make`` writes it).
    """
    from kinema.io import read_video

    folder = Path(folder)
    scenarios, splits = choices(scenario, SCENARIOS, "scenario"), choices(split, SPLITS, "split")
    taken: dict[tuple[str, str], int] = {}
    records = []
    for rec in read_meta(folder):
        key = (rec.get("scenario"), rec.get("split", "id"))
        if key[0] in scenarios and key[1] in splits and taken.get(key, 0) < (n or MAX_CLIPS):
            taken[key] = taken.get(key, 0) + 1
            records.append(rec)
    if not records:
        raise KinemaError(
            f"{folder / META} lists no clips of scenario {scenario} and split {split}"
        )
    missing = [r["file"] for r in records if not (folder / r["file"]).is_file()]
    if missing:
        raise KinemaError(
            f"{folder / META} lists {len(missing)} missing videos, e.g. '{missing[0]}'"
        )
    if cond_frames is None:
        given = {r.get("cond_frames") for r in records}
        if None in given or len(given) > 1:
            raise KinemaError(
                f"{folder / META} does not give one cond_frames for all clips; pass cond_frames"
            )
        cond_frames = int(given.pop())

    def videos() -> Iterator[np.ndarray]:
        for r in records:
            yield read_video(folder / r["file"])

    source = {"videos": str(folder), "scenario": scenario, "split": split}
    return evaluate_physics_videos(
        videos(), records, cond_frames=cond_frames, detectors=detectors, source=source
    )


def _model_cond_frames(
    net: Generator, tok: Tokenizer, frames: int, cond_frames: int | None
) -> tuple[int, dict]:
    """Checked conditioning video frames and the generation option that gives them."""
    from kinema.flow.dit import PyramidDiT

    ft = tok.config.temporal_compression
    vocab = getattr(net.config, "vocabulary", None)
    if vocab is not None:  # multitask token LM: its continuation task, default given frames
        from kinema.lm.tasks import default_given

        if "continuation" not in vocab.tasks:
            raise KinemaError(
                "this multitask token LM has no continuation task; the physics benchmark "
                f"continues given frames (its tasks: {', '.join(vocab.tasks)})"
            )
        latent = default_given(net.config)
        cond = 1 + ft * (latent - 1)
        if cond_frames not in (None, cond):
            raise KinemaError(
                f"this multitask LM continues {cond} frames ({latent} latent frames), "
                f"got cond_frames {cond_frames}"
            )
        option: dict = {"task": "continuation"}
    elif not isinstance(net, PyramidDiT):  # token LM: fixed by its prefix
        latent = net.config.cond_frames
        if not latent:
            raise KinemaError(
                "this token LM takes no conditioning frames; the physics benchmark continues "
                "given frames (train it with --cond-frames >= 1)"
            )
        own = 1 + ft * (latent - 1)
        if cond_frames not in (None, own):
            raise KinemaError(
                f"this token LM is conditioned on {own} frames ({latent} latent frames), "
                f"got cond_frames {cond_frames}"
            )
        cond = own
        option = {}
    else:
        cond = COND_FRAMES if cond_frames is None else cond_frames
        option = {"cond_frames": 1 + (cond - 1) // ft}
        if (cond - 1) % ft:
            raise KinemaError(
                f"cond_frames must be 1 + {ft}k for this model's tokenizer, got {cond}"
            )
    if not 1 <= cond <= frames - 2:
        raise KinemaError(
            f"cond_frames must be in [1, {frames - 2}] for this model's {frames} frames, got {cond}"
        )
    return cond, option


def evaluate_physics_model(
    model: str | os.PathLike | tuple[Generator, Tokenizer],
    *,
    scenario: str = "all",
    split: str = "all",
    n: int = 256,
    cond_frames: int | None = None,
    seed: int = EVAL_SEED,
    batch: int = 16,
    detectors: Sequence[str] = METHODS,
    captions: bool = False,
    save_videos: str | os.PathLike | None = None,
    on_batch: Callable[[int], None] | None = None,
    **sampling,
) -> PhysicsResults:
    """Generate continuations of held-out physics clips with a model and score them.

    model: a model folder, or ``(generator, tokenizer)`` as
        :func:`~kinema.sample.video.load_model` returns.

    For each scenario and split, ``n`` clips of ``PhysicsDataset(seed=seed)`` are rendered
    at the model's frame count and size (:func:`~kinema.sample.video.video_shape`); their
    first ``cond_frames`` frames condition the model (``generate_video`` with one clip per
    sample, ``batch`` at a time) and the generated frames are scored. The floor is the same
    metric on the rendered clips themselves.

    cond_frames: video frames; a token LM's are fixed by its config (None = those), a flow
        model's must be ``1 + ft * k`` (None = 5, the benchmark's).
    captions: give each clip's caption as the prompt (text-conditioned models only); the
        paper's protocol conditions on frames alone.
    save_videos: a folder to keep the generated clips in (lossless mp4, given frames
        included) with their ground truth as ``meta.jsonl``, the layout ``kinema data make``
        writes: :func:`evaluate_physics_folder` rescores it to the same figures, and the
        results name it (``source["videos"]``) so ``kinema eval report`` shows sample frames.
    sampling: passed to :func:`~kinema.sample.video.generate_video` (e.g. ``top_k``,
        ``steps``, ``video_steps``). The sampling seed of a batch is ``seed + first index``.
    on_batch: called with the number of clips after each batch (progress).
    """
    from kinema.sample.video import generate_video, load_model, video_shape

    if not 1 <= n <= MAX_CLIPS:
        raise KinemaError(f"n must be in [1, {MAX_CLIPS}] clips per scenario and split, got {n}")
    if not 1 <= batch <= 1024:
        raise KinemaError(f"batch must be in [1, 1024], got {batch}")
    scenarios, splits = choices(scenario, SCENARIOS, "scenario"), choices(split, SPLITS, "split")
    net, tok = model if isinstance(model, tuple) else load_model(model)
    frames, height, width = video_shape(net, tok)
    cond, option = _model_cond_frames(net, tok, frames, cond_frames)
    scorer = PhysicsScorer(cond, DT, detectors)
    log.info("physics eval: %d-frame %dx%d clips, %d given", frames, height, width, cond)
    saved = None if save_videos is None else _SavedVideos(Path(save_videos), cond)
    for scen in scenarios:
        for sp in splits:
            ds = PhysicsDataset(scen, sp, n, (height, width), frames, DT, cond, seed)
            for start in range(0, n, batch):
                clips = [ds.frames(i) for i in range(start, min(n, start + batch))]
                given = np.stack([f[:cond] for f, _ in clips])  # (B, cond, H, W, 3)
                prompt = [caption(t) for _, t in clips] if captions else None
                out = generate_video(
                    (net, tok),
                    len(clips),
                    video=given,
                    prompt=prompt,
                    seed=seed + start,
                    **option,
                    **sampling,
                )  # (B, T, H, W, 3)
                for i, (video, (truth_video, truth)) in enumerate(zip(out, clips, strict=True)):
                    scorer.add(video, truth, sp, truth_video, name=f"{scen}/{sp} clip {start + i}")
                    if saved is not None:
                        saved.add(video, truth, sp, start + i)
                if on_batch is not None:
                    on_batch(len(clips))
    source = {
        "model": type(net).__name__ if isinstance(model, tuple) else str(model),
        "scenario": scenario,
        "split": split,
        "n": n,
        "seed": seed,
        "frames": frames,
        "resolution": [height, width],
        "captions": captions,
        "sampling": jsonable(sampling),
    }
    if saved is not None:
        source["videos"] = str(saved.finish())
    return scorer.results(source)


class _SavedVideos:
    """Generated clips written as ``kinema data make`` does: lossless mp4 files and one
    ``meta.jsonl`` of ground truth (written last, atomically)."""

    def __init__(self, folder: Path, cond_frames: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.cond_frames, self.lines = folder, cond_frames, []

    def add(self, video: np.ndarray, truth: Trajectory, split: str, index: int) -> None:
        from kinema.io import write_video

        file = f"{truth.scenario}_{split}_{index:05d}.mp4"
        write_video(self.folder / file, video, fps=1.0 / DT, lossless=True)
        rec = {
            "file": file,
            "fps": 1.0 / DT,
            "scenario": truth.scenario,
            "split": split,
            "index": index,
            "caption": caption(truth),
            "cond_frames": self.cond_frames,
            "num_balls": len(truth.radii),
            "positions": truth.positions,
            "radii": truth.radii,
            "collision_time": truth.collision_time,
        }
        self.lines.append(json.dumps(jsonable(rec)))

    def finish(self) -> Path:
        from kinema.utils.fs import atomic_file

        with atomic_file(self.folder / META) as tmp:
            tmp.write_text("\n".join(self.lines) + "\n")
        return self.folder


__all__ = [
    "EVAL_SEED",
    "PhysicsResults",
    "PhysicsRow",
    "PhysicsScorer",
    "evaluate_physics_folder",
    "evaluate_physics_model",
    "evaluate_physics_videos",
    "read_meta",
    "trajectory_from_meta",
]
