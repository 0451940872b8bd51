"""The web demo (`kinema serve`): a Gradio page over :func:`kinema.api.generate`.

:class:`Demo` holds the models and turns form values into one bounded ``generate`` call;
:func:`build_app` lays out the page around it. Gradio is imported only here and only when a
page is built (``pip install 'kinema[app]'``). One job runs at a time (queue concurrency 1)
so concurrent users wait instead of oversubscribing the CPU.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kinema.api import MAX_SEED, Limits, select_model
from kinema.api import generate as generate_videos
from kinema.errors import KinemaError
from kinema.hub import DEFAULT_MODELS, default_model, shipped_models
from kinema.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, probe, write_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppConfig:
    """What one visitor may ask of the server.

    Attributes:
        limits: bounds of each generate call (one video, fewer steps than the library's).
        max_upload_mb: size of an uploaded first image / video (also Gradio's upload limit).
        max_pixels: width x height of an uploaded image or video frame.
        max_queue: jobs waiting at most; later visitors are turned away until one finishes.
        fps: frame rate of the shown video.
        keep_outputs: generated files kept on disk (older ones are deleted; Gradio serves
            its own copy).
        video_format: webm (VP9) plays in every browser without proprietary codecs.
    """

    limits: Limits = field(default_factory=lambda: Limits(max_samples=1, max_steps=50))
    max_upload_mb: float = 20.0
    max_pixels: int = 2048 * 2048
    max_queue: int = 16
    fps: float = 10.0
    keep_outputs: int = 32
    video_format: str = "webm"


class Demo:
    """The app without its page: models by method, and :meth:`run`, the handler of the
    Generate button (every input checked; bad input raises ``gradio.Error``, a message shown
    to the user, never a traceback).

    Args:
        models: model folders or shipped names (one per method; a later one of the same
            method is ignored); None = the shipped default models.
        config: the bounds, see :class:`AppConfig`.
    """

    def __init__(
        self, models: Sequence[str | os.PathLike] | None = None, config: AppConfig | None = None
    ) -> None:
        self.config = config or AppConfig()
        if not models:
            shipped = set(shipped_models())
            models = [name for name in DEFAULT_MODELS.values() if name in shipped]
            if not models:
                default_model()  # raises the one-line "none shipped" error
        self.models: dict[str, Path] = {}
        for spec in models:
            folder, kind = select_model(spec)
            if kind in self.models:
                log.warning(
                    "%s: a %s model is already served (%s)", folder, kind, self.models[kind]
                )
                continue
            self.models[kind] = folder
        # "auto": the first method by the preference order of the shipped defaults
        self.methods = ["auto", *sorted(self.models, key=list(DEFAULT_MODELS).index)]
        self._loaded: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._out_dir = Path(tempfile.mkdtemp(prefix="kinema-app-"))
        self._outputs: deque[Path] = deque()
        self._count = 0

    def run(
        self,
        prompt: str | None,
        method: str = "auto",
        seed: float | None = 0,
        frames: float | None = 0,
        guidance: float | None = 0,
        steps: float | None = 0,
        image: str | None = None,
        video: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[str, str]:
        """Generate one video from the form -> (file path, status line with the wall time).

        ``frames`` / ``steps`` / ``guidance`` 0: the default (guidance:
        :data:`~kinema.api.FLOW_GUIDANCE` for a flow model with a prompt, else off);
        ``steps`` is per pyramid stage of every frame. ``image`` / ``video``: uploaded file paths.
        """
        try:
            return self._run(prompt, method, seed, frames, guidance, steps, image, video, progress)
        except KinemaError as e:
            import gradio as gr

            raise gr.Error(str(e), print_exception=False) from None

    def _run(self, prompt, method, seed, frames, guidance, steps, image, video, progress):
        if method not in self.methods:
            raise KinemaError(f"method must be one of {', '.join(self.methods)}, got '{method}'")
        kind = self.methods[1] if method == "auto" else method
        seed = _whole(seed, "seed") or 0
        frames, steps = _whole(frames, "frames") or None, _whole(steps, "steps") or None
        guidance = float(guidance) if guidance else None  # 0: default (NaN: caught by the bounds)
        for path, kinds, what in (
            (image, IMAGE_EXTENSIONS, "image"),
            (video, VIDEO_EXTENSIONS, "video"),
        ):
            if path is not None:
                self._check_upload(Path(path), kinds, what)
        start = time.perf_counter()
        with self._lock:
            if kind not in self._loaded:
                from kinema.sample.video import load_model

                self._loaded[kind] = load_model(self.models[kind])
            videos = generate_videos(
                prompt,
                model=self._loaded[kind],
                method=kind,
                image=image,
                video=video,
                frames=frames,
                seed=seed,
                guidance=guidance,
                steps=steps,
                video_steps=steps if kind == "pyramid-flow" else None,
                progress=progress,
                limits=self.config.limits,
            )
            path = self._save(videos[0])
        _, t, h, w, _ = videos.shape
        seconds = time.perf_counter() - start
        status = (
            f"{t} frames of {w}x{h} in {seconds:.1f} s "
            f"({kind}: {self.models[kind].name}, seed {seed})"
        )
        log.info("app: %s", status)
        return str(path), status

    def _check_upload(self, path: Path, suffixes: Sequence[str], what: str) -> None:
        c = self.config
        if path.suffix.lower() not in suffixes:
            raise KinemaError(f"the {what} must be a {', '.join(suffixes)} file, got '{path.name}'")
        mb = path.stat().st_size / 1e6
        if mb > c.max_upload_mb:
            raise KinemaError(f"the {what} is {mb:.1f} MB; at most {c.max_upload_mb:g} MB")
        info = probe(path)
        if info.width * info.height > c.max_pixels:
            raise KinemaError(
                f"the {what} is {info.width}x{info.height}; at most {c.max_pixels:,} pixels"
            )

    def _save(self, video) -> Path:
        """Write uint8 ``(T, H, W, 3)``; keep only the newest ``keep_outputs`` files."""
        self._count += 1
        path = self._out_dir / f"kinema_{self._count:06d}.{self.config.video_format}"
        write_video(path, video, fps=self.config.fps)
        self._outputs.append(path)
        while len(self._outputs) > self.config.keep_outputs:
            self._outputs.popleft().unlink(missing_ok=True)
        return path


def _whole(value: float | None, name: str) -> int | None:
    """A form number that must be a whole number (Gradio sends floats)."""
    if value is None:
        return None
    if not math.isfinite(value) or float(value) != int(value):
        raise KinemaError(f"{name} must be a whole number, got {value}")
    return int(value)


def _gradio():
    try:
        import gradio
    except ImportError:
        raise KinemaError("the web app needs gradio: pip install 'kinema[app]'") from None
    return gradio


def build_app(models: Sequence[str | os.PathLike] | None = None, config: AppConfig | None = None):
    """The Gradio page (a ``gradio.Blocks``, queued: one job at a time, ``max_queue``
    waiting) over a :class:`Demo` of ``models``; ``.launch()`` it or see :func:`serve`."""
    gr = _gradio()
    demo = Demo(models, config)
    c, lim = demo.config, demo.config.limits
    served = ", ".join(f"{kind}: {folder.name}" for kind, folder in demo.models.items())
    with gr.Blocks(title="kinema", analytics_enabled=False) as blocks:
        gr.Markdown(f"# kinema\nVideo generation on the CPU. Models: {served}.")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(
                    label="prompt",
                    placeholder="a red ball moves to the left",
                    max_length=lim.max_prompt_chars,
                    elem_id="prompt",
                )
                method = gr.Dropdown(demo.methods, value="auto", label="method")
                with gr.Row():
                    seed = gr.Number(0, label="seed", precision=0, minimum=0, maximum=MAX_SEED)
                    frames = gr.Number(
                        0,
                        label="frames (0: the model's length)",
                        precision=0,
                        minimum=0,
                        maximum=lim.max_frames,
                    )
                with gr.Row():
                    guidance = gr.Number(
                        0, label="guidance (0: default)", minimum=0, maximum=lim.max_guidance
                    )
                    steps = gr.Number(
                        0,
                        label="pyramid-flow steps per stage (0: default)",
                        precision=0,
                        minimum=0,
                        maximum=lim.max_steps,
                    )
                image = gr.File(
                    label=f"first frame (optional, up to {c.max_upload_mb:g} MB)",
                    file_types=list(IMAGE_EXTENSIONS),
                    type="filepath",
                )
                video = gr.File(
                    label=f"video to continue (optional, up to {c.max_upload_mb:g} MB)",
                    file_types=list(VIDEO_EXTENSIONS),
                    type="filepath",
                )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                output = gr.Video(
                    label="video", elem_id="output", autoplay=True, loop=True, interactive=False
                )
                status = gr.Markdown(elem_id="status")

        def run(
            prompt, method, seed, frames, guidance, steps, image, video, progress=gr.Progress()
        ):
            def report(done: int, total: int) -> None:
                progress((done, total), desc="generating")

            return demo.run(prompt, method, seed, frames, guidance, steps, image, video, report)

        inputs = [prompt, method, seed, frames, guidance, steps, image, video]
        button.click(run, inputs, [output, status])
        prompt.submit(run, inputs, [output, status])
    return blocks.queue(max_size=c.max_queue, default_concurrency_limit=1)


def serve(
    models: Sequence[str | os.PathLike] | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    config: AppConfig | None = None,
) -> None:
    """Build the page and serve it until interrupted (``kinema serve``)."""
    config = config or AppConfig()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's startup self-requests
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the app", host)
    build_app(models, config).launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{config.max_upload_mb:g}mb",
        show_error=False,
    )


__all__ = ["AppConfig", "Demo", "build_app", "serve"]
