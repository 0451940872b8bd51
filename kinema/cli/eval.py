"""``kinema eval``: physics velocity error, FVD and text adherence of generated videos, and
the HTML report of their results.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from kinema.cli.common import _parse_steps, _threads, console, lazy_progress
from kinema.errors import KinemaError

eval_app = typer.Typer(help="Evaluate generative models.", no_args_is_help=True)


@eval_app.command("physics")
def eval_physics(
    model: str | None = typer.Option(
        None, "--model", help="Model folder (token LM or pyramid flow) to generate with."
    ),
    videos: Path | None = typer.Option(
        None, "--videos", help="Or a folder of videos + meta.jsonl (as `kinema data make`)."
    ),
    scenario: str = typer.Option("all", help="all, uniform, collision or parabola."),
    split: str = typer.Option("all", help="all, id or ood."),
    n: int | None = typer.Option(
        None,
        "--n",
        min=1,
        max=10_000,
        help="Clips per scenario and split (--model: default 256; --videos: default all).",
    ),
    cond_frames: int | None = typer.Option(
        None,
        help="Given frames (token LM: its own; flow: 5; --videos: from meta.jsonl).",
    ),
    seed: int | None = typer.Option(
        None, help="--model: dataset seed of the held-out clips (default 1000, not training's 0)."
    ),
    batch: int | None = typer.Option(
        None, min=1, max=1024, help="--model: clips per generate call (default 16)."
    ),
    detector: str = typer.Option("all", help="all, alpha (primary) or threshold (paper's)."),
    captions: bool = typer.Option(False, help="--model: give each clip's caption as prompt."),
    temperature: float | None = typer.Option(None, min=0.0, help="token-lm: temperature."),
    top_k: int | None = typer.Option(None, min=1, help="token-lm: keep the k likeliest."),
    steps: str | None = typer.Option(None, help="pyramid-flow: first-frame steps per stage."),
    video_steps: str | None = typer.Option(None, help="pyramid-flow: later-frame steps."),
    save_videos: Path | None = typer.Option(
        None,
        "--save-videos",
        help="--model: keep the generated clips here (mp4 + meta.jsonl; `eval report` shows them).",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Physics velocity error (DATA.md) of a model's continuations or of a video folder,
    next to the ground-truth floor at the same resolution."""
    from kinema.data.physics import SCENARIOS, SPLITS
    from kinema.eval.physics import METHODS
    from kinema.eval.physics_eval import choices, evaluate_physics_folder, evaluate_physics_model

    _threads(threads)
    if (model is None) == (videos is None):
        raise KinemaError("give either --model PATH or --videos DIR")
    detectors = choices(detector, METHODS, "detector")
    model_only = {
        "--seed": seed,
        "--batch": batch,
        "--captions": captions or None,
        "--temperature": temperature,
        "--top-k": top_k,
        "--steps": _parse_steps(steps, "--steps"),
        "--video-steps": _parse_steps(video_steps, "--video-steps"),
        "--save-videos": save_videos,
    }
    if videos is not None:
        wrong = [k for k, v in model_only.items() if v is not None]
        if wrong:
            raise KinemaError(f"{', '.join(wrong)}: options of --model, not --videos")
        results = evaluate_physics_folder(
            videos,
            scenario=scenario,
            split=split,
            n=n,
            cond_frames=cond_frames,
            detectors=detectors,
        )
    else:
        n = n or 256
        total = (
            n * len(choices(scenario, SCENARIOS, "scenario")) * len(choices(split, SPLITS, "split"))
        )
        options = {k.lstrip("-").replace("-", "_"): v for k, v in model_only.items()}
        with lazy_progress("generate + score") as report:
            scored = [0]

            def advance(k: int) -> None:
                scored[0] += k
                report(scored[0], total)

            results = evaluate_physics_model(
                model,
                scenario=scenario,
                split=split,
                n=n,
                cond_frames=cond_frames,
                detectors=detectors,
                on_batch=advance,
                **{k: v for k, v in options.items() if v is not None},
            )
    _report_results(results, json_out)


def _report_results(results, json_out: Path | None) -> None:
    """Print an eval command's markdown table; write its JSON (atomically) if asked."""
    from kinema.utils.fs import atomic_file

    console.print(results.markdown(), markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        with atomic_file(json_out) as tmp:
            tmp.write_text(json.dumps(results.to_dict(), indent=2))
        console.print(f"wrote {json_out}", soft_wrap=True, highlight=False)


@eval_app.command("fvd")
def eval_fvd(
    real: Path = typer.Option(..., "--real", help="Folder of real video files."),
    fake: Path = typer.Option(..., "--fake", help="Folder of generated video files."),
    detector: Path = typer.Option(
        ...,
        "--detector",
        help="Local Kinetics-400 I3D: .safetensors or .pt state dict, or TorchScript .pt.",
    ),
    frames: int = typer.Option(16, "--frames", help="Frames per clip (its first ones)."),
    n: int | None = typer.Option(
        None, "--n", help="Clips per set: the first N files, sorted (default all)."
    ),
    batch: int = typer.Option(8, "--batch", help="Clips per detector call."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Fréchet Video Distance between two folders of videos with a local I3D (no
    downloads). Biased by the number of clips: compare values only at equal --n."""
    from kinema.eval.fvd import fvd_folders

    _threads(threads)
    with lazy_progress("I3D features") as report:
        result = fvd_folders(
            real,
            fake,
            detector,
            frames=frames,
            n=n,
            batch_size=batch,
            device=device,
            on_clip=report,
        )
    _report_results(result, json_out)


@eval_app.command("adherence")
def eval_adherence(
    videos: Path = typer.Option(
        ..., "--videos", help="Folder of generated videos + captions.jsonl or meta.jsonl."
    ),
    captions: Path | None = typer.Option(
        None, "--captions", help='Prompts file ({"file", "caption"} lines) if not in the folder.'
    ),
    n: int | None = typer.Option(None, "--n", help="At most N clips (sorted by file)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
) -> None:
    """Text adherence on shapes / digits / physics prompts: does each video show the
    prompt's colours, moving in its direction?"""
    from kinema.eval.adherence import evaluate_adherence_folder

    if n is not None and n < 1:
        raise KinemaError(f"--n must be at least 1, got {n}")
    _report_results(evaluate_adherence_folder(videos, captions=captions, n=n), json_out)


@eval_app.command("multitask")
def eval_multitask(
    model: str = typer.Option(..., "--model", help="Multitask token LM folder."),
    tasks: str | None = typer.Option(
        None, help="Tasks to score, comma-separated (default: every one the model has)."
    ),
    n: int = typer.Option(32, "--n", min=1, max=10_000, help="Held-out clips per task."),
    batch: int = typer.Option(8, min=1, max=1024, help="Clips per generate call."),
    seed: int = typer.Option(1000, help="Dataset seed of the held-out clips (training: 0)."),
    sr_model: str | None = typer.Option(
        None, "--sr-model", help="Also score this super-resolution folder against bicubic."
    ),
    long_times: int = typer.Option(
        0, "--long", min=0, max=1000, help="Long video: extension rounds (0: skip)."
    ),
    long_n: int = typer.Option(8, "--long-n", min=1, max=1024, help="Clips of the long check."),
    long_scenario: str = typer.Option(
        "bounce", "--long-scenario", help="Physics scenario of the long check's clips."
    ),
    temperature: float | None = typer.Option(None, min=0.0, help="Sampling temperature."),
    top_k: int | None = typer.Option(None, min=1, help="Keep the k likeliest tokens."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Per-task checks of a multitask (VideoPoet) model on held-out physics clips:
    continuation velocity error, t2v adherence, in/outpainting PSNR inside vs outside the
    mask, stylization edge F1, video-to-audio click timing, SR vs bicubic, long-video drift."""
    from kinema.eval.multitask import evaluate_multitask

    _threads(threads)
    names = [t.strip() for t in tasks.split(",")] if tasks else None
    sampling = {"temperature": temperature, "top_k": top_k}
    results = evaluate_multitask(
        model,
        tasks=names,
        n=n,
        batch=batch,
        seed=seed,
        sr_model=sr_model,
        long_times=long_times,
        long_n=long_n,
        long_scenario=long_scenario,
        on_step=lambda task: console.print(f"scoring {task}", highlight=False),
        **{k: v for k, v in sampling.items() if v is not None},
    )
    _report_results(results, json_out)


@eval_app.command("long-video")
def eval_long_video(
    model: str = typer.Option(..., "--model", help="Token LM folder or shipped name."),
    times: int = typer.Option(13, "--times", min=1, max=1000, help="Extension rounds."),
    n: int = typer.Option(8, "--n", min=1, max=10_000, help="Held-out clips to extend."),
    batch: int = typer.Option(8, min=1, max=1024, help="Clips per generate call."),
    scenario: str = typer.Option(
        "bounce", help="Physics scenario of the clips (bounce: stays in view, has a truth)."
    ),
    seed: int = typer.Option(1000, help="Dataset seed of the held-out clips (training: 0)."),
    temperature: float | None = typer.Option(None, min=0.0, help="Sampling temperature."),
    top_k: int | None = typer.Option(None, min=1, help="Keep the k likeliest tokens."),
    top_p: float | None = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling mass."),
    cfg: float | None = typer.Option(
        None, "--cfg", min=0.0, max=20.0, help="Guidance scale (against the null condition)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Long-video drift: extend held-out physics clips TIMES rounds with a token LM and compare
    the ball's radius and colour in the last clip-length of frames with the given clip's."""
    from kinema.eval.long_video import evaluate_long_video

    _threads(threads)
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "cfg_scale": cfg}
    results = evaluate_long_video(
        model, times=times, n=n, batch=batch, scenario=scenario, seed=seed,
        **{k: v for k, v in sampling.items() if v is not None},
    )  # fmt: skip
    _report_results(results, json_out)


@eval_app.command("audio-codec")
def eval_audio_codec(
    model: str = typer.Option(
        ..., "--model", help="Audio codec folder, or a multitask model folder holding one."
    ),
    n: int = typer.Option(64, "--n", min=1, max=10_000, help="Held-out clips."),
    scenario: str = typer.Option("collision", help="Physics scenario (collision: one click)."),
    frames: int = typer.Option(17, min=2, help="Video frames per clip (sound of frames * dt)."),
    seed: int = typer.Option(1000, help="Dataset seed of the held-out clips (training: 0)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """How well an audio codec carries the physics sound: reconstruction SNR and the clicks
    it keeps (matched / missed / extra, timing error) next to the true sound's."""
    from kinema.eval.audio_codec import evaluate_audio_codec

    _threads(threads)
    results = evaluate_audio_codec(model, n=n, scenario=scenario, frames=frames, seed=seed)
    _report_results(results, json_out)


@eval_app.command("report")
def eval_report(
    results: list[Path] = typer.Argument(..., help="Results JSON files (eval ... --json)."),
    out: Path = typer.Option(..., "--out", help="HTML file to write."),
    title: str = typer.Option("kinema evaluation", help="Page title."),
    samples: int = typer.Option(4, help="Sample clips shown per result (0: none)."),
) -> None:
    """One self-contained HTML page (tables, charts, sample frames) from eval results."""
    from kinema.eval.report import write_report

    if not 0 <= samples <= 100:
        raise KinemaError(f"--samples must be in [0, 100], got {samples}")
    page = write_report(results, out, title=title, samples=samples)
    console.print(f"wrote {page}", soft_wrap=True, highlight=False)
