"""``kinema generate``: videos (and a multitask LM's audio) from a shipped or trained model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from kinema.cli.common import _parse_steps, _threads, console, lazy_progress
from kinema.errors import KinemaError

commands = typer.Typer()


@commands.command()
def generate(
    prompt_arg: str | None = typer.Argument(
        None, metavar="PROMPT", help="Text prompt (text-conditioned models), or --prompt."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Text prompt."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model folder or shipped name (default: the shipped model of --method).",
    ),
    method: str = typer.Option(
        "auto", help="auto, nbp, ntp or pyramid-flow (token-lm: either LM); checks --model."
    ),
    out: Path = typer.Option(Path("kinema_out.mp4"), "--out", "-o", help="Output file."),
    fmt: str | None = typer.Option(
        None, "--format", help="mp4, gif or webm (replaces the suffix of --out)."
    ),
    image: Path | None = typer.Option(
        None, "--image", help="First frame (image-to-video), resized to the model's size."
    ),
    video: Path | None = typer.Option(
        None, "--video", help="Conditioning video (first frames; flow: the first frame)."
    ),
    label: int | None = typer.Option(None, "--class", help="Class id (class-conditioned)."),
    grid: int = typer.Option(
        1, "--grid", "--n", help="Videos sampled from --seed, side by side (at most 16)."
    ),
    frames: int | None = typer.Option(
        None, help="pyramid-flow: frames (1 + 4k; default and maximum: the training length)."
    ),
    seed: int = typer.Option(0, help="Sampling seed."),
    guidance: float | None = typer.Option(
        None,
        "--guidance",
        "--cfg",
        help="Classifier-free guidance scale, 0-20 (pyramid-flow: of the first frame; "
        "default with a prompt 7).",
    ),
    video_guidance: float | None = typer.Option(
        None,
        help="pyramid-flow: guidance of later frames (default: --guidance if given, "
        "else 5 with a prompt).",
    ),
    steps: str | None = typer.Option(
        None, help="pyramid-flow: Euler steps per stage of the first frame: 20 or 20,20,20."
    ),
    video_steps: str | None = typer.Option(
        None, help="pyramid-flow: Euler steps per stage of later frames (default 10 each)."
    ),
    temperature: float | None = typer.Option(
        None, help="token-lm: sampling temperature, 0-10 (default 1)."
    ),
    top_k: int | None = typer.Option(None, help="token-lm: keep the k likeliest tokens."),
    top_p: float | None = typer.Option(None, help="token-lm: nucleus sampling mass."),
    fps: float = typer.Option(10.0, help="Frame rate of the output (1-120)."),
    task: str | None = typer.Option(
        None,
        help="Multitask LM: t2v, i2v, continuation, inpaint, outpaint, stylize:edges, v2a "
        "(v2a also writes OUT.wav).",
    ),
    mask: str | None = typer.Option(
        None, help="inpaint / outpaint: box:y0,x0,y1,x1 or border:N in latent cells."
    ),
    extend: int | None = typer.Option(
        None, help="Token LM: continue the video N more times (long video; 0-16)."
    ),
    chain: str | None = typer.Option(
        None, help="Multitask LM: tasks in sequence, e.g. i2v,stylize:edges (at most 8)."
    ),
    upscale: int | None = typer.Option(
        None, help="Upscale by this factor (2-8) with the super-resolution model --sr-model."
    ),
    sr_model: str | None = typer.Option(
        None,
        "--sr-model",
        help="Super-resolution folder (model + lr_tokenizer/ + hr_tokenizer/) for --upscale.",
    ),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Generate a video: text-to-video, image-to-video (--image) or continuation (--video)
    with a token LM (NBP or NTP) or a pyramid-flow DiT; the shipped model by default.
    Multitask LMs also take --task / --chain (inpainting, stylization, video-to-audio, ...);
    --extend makes long videos, --upscale cascades through a super-resolution model."""
    from kinema.api import generate_media, select_model
    from kinema.io import WRITE_FORMATS, make_grid, write_video

    _threads(threads)
    if prompt_arg is not None and prompt is not None and prompt_arg != prompt:
        raise KinemaError("give the prompt once: as the argument or as --prompt")
    if fmt is not None:
        if fmt not in WRITE_FORMATS:
            raise KinemaError(f"--format must be one of {', '.join(WRITE_FORMATS)}, got '{fmt}'")
        out = out.with_suffix(f".{fmt}")
    if out.suffix.lower().lstrip(".") not in WRITE_FORMATS:
        raise KinemaError(f"--out must end in .{', .'.join(WRITE_FORMATS)} (or give --format)")
    if not 1.0 <= fps <= 120.0:
        raise KinemaError(f"--fps must be in [1, 120], got {fps}")
    folder, kind = select_model(model, method)
    lm_only = {"--temperature": temperature, "--top-k": top_k, "--top-p": top_p}
    flow_only = {
        "--video-guidance": video_guidance,
        "--steps": steps,
        "--video-steps": video_steps,
        "--frames": frames,
    }
    is_flow = kind == "pyramid-flow"
    wrong = [k for k, v in (lm_only if is_flow else flow_only).items() if v is not None]
    if wrong:
        raise KinemaError(
            f"{', '.join(wrong)}: not an option of {'pyramid-flow' if is_flow else 'token-lm'} "
            "models"
        )
    start = time.perf_counter()
    with lazy_progress(f"generate ({kind})") as report:
        result = generate_media(
            prompt_arg if prompt_arg is not None else prompt,
            model=folder,
            method=kind,
            image=image,
            video=video,
            frames=frames,
            seed=seed,
            guidance=guidance,
            steps=_stage_steps(steps, "--steps"),
            n=grid,
            progress=report,
            label=label,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            video_steps=_stage_steps(video_steps, "--video-steps"),
            video_guidance_scale=video_guidance,
            task=task,
            mask=mask,
            extend=extend,
            chain=chain,
            upscale=upscale,
            sr_model=sr_model,
        )
    videos = result.video
    n, t, h, w, _ = videos.shape
    grid_video = make_grid(list(videos), ncols=n, pad_value=128) if n > 1 else videos[0]
    write_video(out, grid_video, fps=fps)
    console.print(
        f"wrote {out} ({n} x {t} frames of {h}x{w}, {kind} model {folder}) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if result.audio is not None:
        for i, wave in enumerate(result.audio):
            path = out.with_suffix(".wav") if n == 1 else out.with_suffix(f".{i}.wav")
            write_wav(path, wave, result.sample_rate)
            console.print(f"wrote {path} ({len(wave) / result.sample_rate:.2f} s)")


def write_wav(path: Path, wave, sample_rate: int) -> None:
    """Mono float samples in [-1, 1] -> 16-bit PCM .wav (atomic)."""
    import wave as wavefile

    import numpy as np

    from kinema.utils.fs import atomic_file

    pcm = (np.clip(np.asarray(wave, dtype=np.float32), -1, 1) * 32767).round().astype("<i2")
    with atomic_file(path) as tmp, wavefile.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())


def _stage_steps(spec: str | None, option: str) -> int | list[int] | None:
    """``"20"`` -> 20 (every stage), ``"20,20,10"`` -> one per stage."""
    steps = _parse_steps(spec, option)
    return steps[0] if steps is not None and len(steps) == 1 else steps
