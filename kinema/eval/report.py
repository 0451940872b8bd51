"""One self-contained HTML page from the results JSON files the ``kinema eval`` commands
write (physics, FVD, adherence): tables, an inline SVG bar chart of the physics velocity
error next to its ground-truth floor, and sample frames as inline PNGs where the results
point at video files that still exist. No scripts, no external resources.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError, VideoDecodeError

log = logging.getLogger(__name__)

KINDS = ("physics", "fvd", "adherence")
THUMB_HEIGHT = 64  # pixels per sample frame
THUMB_FRAMES = 6  # frames per filmstrip

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.source { color: #666; font-size: 0.9em; } .ok { color: #080; } .bad { color: #b00; }
img { image-rendering: pixelated; display: block; }
"""


def result_kind(data: object) -> str | None:
    """``physics`` / ``fvd`` / ``adherence`` for a results dict the eval commands write."""
    if not isinstance(data, dict):
        return None
    if data.get("metric") in KINDS:
        return data["metric"]
    rows = data.get("rows")
    if "cond_frames" in data and isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
        return "physics"
    return None


def load_results(path: str | os.PathLike) -> tuple[str, dict]:
    """A results JSON file -> (kind, data); one-line errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise KinemaError(f"results file '{path}' does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KinemaError(f"'{path}' is not JSON ({getattr(e, 'msg', e)})") from None
    kind = result_kind(data)
    if kind is None:
        raise KinemaError(
            f"'{path}' is not a results file of kinema eval ({', '.join(KINDS)}; "
            "written with --json)"
        )
    return kind, data


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(x: object, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else _e(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_cols: int = 0) -> str:
    """Cells are HTML already; the first ``text_cols`` columns are left-aligned."""

    def cls(i: int) -> str:
        return ' class="text"' if i < text_cols else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>\n" for r in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _source(data: dict) -> str:
    src = data.get("source") or {}
    items = [
        f"{_e(k)}: {_e(json.dumps(v) if isinstance(v, dict | list) else v)}"
        for k, v in src.items()
        if v is not None
    ]
    return f'<p class="source">{" &middot; ".join(items)}</p>\n' if items else ""


def bar_chart(groups: Sequence[tuple[str, Sequence[float | None]]], series: Sequence[str]) -> str:
    """An inline SVG of grouped bars: ``groups`` of (label, one value per series)."""
    colours = ("#c0392b", "#95a5a6", "#2980b9", "#27ae60")
    top = max([v for _, vals in groups for v in vals if v is not None] or [1.0]) or 1.0
    bar, gap, height, base, left = 28, 40, 160, 190, 10  # a group is 96 px: room for labels
    width = left + len(groups) * (len(series) * bar + gap) + 140
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{base + 40}" '
        f'role="img" aria-label="{_e(" vs ".join(series))}">'
    ]
    for g, (label, vals) in enumerate(groups):
        x0 = left + g * (len(series) * bar + gap)
        for s, v in enumerate(vals):
            x = x0 + s * bar
            if v is None:
                parts.append(
                    f'<text x="{x + bar / 2}" y="{base - 4}" font-size="10" '
                    'text-anchor="middle">-</text>'
                )
                continue
            h = max(height * v / top, 1.0)
            parts.append(
                f'<rect x="{x}" y="{base - h:.1f}" width="{bar - 4}" height="{h:.1f}" '
                f'fill="{colours[s % len(colours)]}"><title>{_e(series[s])}: {v:.4f}</title></rect>'
            )
            parts.append(
                f'<text x="{x + (bar - 4) / 2}" y="{base - h - 3:.1f}" font-size="9" '
                f'text-anchor="middle">{v:.3f}</text>'
            )
        parts.append(
            f'<text x="{x0 + len(series) * bar / 2}" y="{base + 14}" font-size="11" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
    lx = left + len(groups) * (len(series) * bar + gap) + 10
    for s, name in enumerate(series):
        parts.append(
            f'<rect x="{lx}" y="{20 + 18 * s}" width="12" height="12" '
            f'fill="{colours[s % len(colours)]}"/><text x="{lx + 18}" y="{30 + 18 * s}" '
            f'font-size="11">{_e(name)}</text>'
        )
    parts.append(f'<line x1="{left}" y1="{base}" x2="{lx - 10}" y2="{base}" stroke="#444"/>')
    return "".join(parts) + "</svg>\n"


def filmstrip(path: Path) -> str | None:
    """A few frames of a video as an inline PNG ``<img>``; None if it cannot be read."""
    from PIL import Image  # Pillow ships with matplotlib (a dependency)

    from kinema.io import make_grid, read_video, resize_video

    try:
        video = read_video(path)
    except VideoDecodeError as e:
        log.warning("no sample frames: %s", e)
        return None
    t, h, w, _ = video.shape
    picks = np.unique(np.linspace(0, t - 1, min(THUMB_FRAMES, t)).round().astype(int))
    size = (THUMB_HEIGHT, max(1, round(THUMB_HEIGHT * w / h)))
    frames = resize_video(video[picks], size)
    strip = make_grid([f[None] for f in frames], ncols=len(frames), pad=1)[0]
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG", optimize=True)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f'<img alt="frames of {_e(path.name)}" width="{strip.shape[1]}" '
        f'height="{strip.shape[0]}" src="data:image/png;base64,{data}">'
    )


def _find(name: str | None, bases: Sequence[Path]) -> Path | None:
    """A file or folder named in a results file, relative to the first of ``bases`` where
    it exists (an absolute name is itself)."""
    if not name:
        return None
    for base in bases:
        p = base / name
        if p.exists():
            return p
    return None


def _folder_samples(folder: Path | None, samples: int) -> str:
    from kinema.eval.fvd import folder_videos

    if folder is None or not folder.is_dir() or samples < 1:
        return ""
    try:
        files = folder_videos(folder)
    except (KinemaError, ValueError):
        return ""
    # spread over the sorted files (e.g. every scenario and split of a saved physics eval)
    k = min(samples, len(files))
    files = [files[i * len(files) // k] for i in range(k)]
    strips = [(f, filmstrip(f)) for f in files]
    rows = [[_e(f.relative_to(folder)), s] for f, s in strips if s]
    return _table(["file", "frames"], rows, 2) if rows else ""


def _physics(data: dict, samples: int, bases: Sequence[Path]) -> str:
    rows = data["rows"]
    table = _table(
        [
            "scenario",
            "split",
            "detector",
            "error",
            "ground-truth floor",
            "clips",
            "intervals",
            "missed",
        ],
        [
            [
                _e(r.get("scenario")),
                _e(r.get("split")),
                _e(r.get("detector")),
                _num(r.get("error")),
                _num(r.get("floor")),
                _num(r.get("clips")),
                _num(r.get("intervals")),
                _num(r.get("missed")),
            ]
            for r in rows
        ],
        3,
    )
    detectors = [r.get("detector") for r in rows]
    primary = "alpha" if "alpha" in detectors else (detectors[0] if detectors else None)
    groups = [
        (f"{r.get('scenario')} / {r.get('split')}", [r.get("error"), r.get("floor")])
        for r in rows
        if r.get("detector") == primary
    ]
    chart = ""
    if groups:
        chart = (
            f"<h3>Velocity error per scenario ({_e(primary)} detector, world units/s)</h3>\n"
            + bar_chart(groups, ["error", "ground-truth floor"])
        )
    info = (
        f"<p>{_num(data.get('cond_frames'))} given frames, dt {_num(data.get('dt'), 3)} s; "
        "mean |v - v_true| over the scored intervals (DATA.md).</p>\n"
    )
    folder = _find((data.get("source") or {}).get("videos"), bases)
    return info + table + chart + _folder_samples(folder, samples)


def _fvd(data: dict, samples: int, bases: Sequence[Path]) -> str:
    table = _table(
        ["FVD", "real clips", "generated clips", "frames", "size", "features"],
        [
            [
                _num(data.get("fvd"), 2),
                _num(data.get("real")),
                _num(data.get("fake")),
                _num(data.get("frames")),
                _num(data.get("size")),
                _num(data.get("features")),
            ]
        ],
    )
    note = (
        "<p>FVD is biased by the number of clips: compare values only at equal N, frames "
        "and detector.</p>\n"
    )
    src = data.get("source") or {}
    strips = ""
    for key, label in (("real", "real"), ("fake", "generated")):
        part = _folder_samples(_find(src.get(key), bases), samples)
        strips += f"<h3>Sample {label} clips</h3>\n{part}" if part else ""
    return table + note + strips


def _adherence(data: dict, samples: int, bases: Sequence[Path]) -> str:
    def pct(x: object, n: object) -> str:
        return "-" if x is None else f"{100 * x:.1f}% <small>of {_e(n)}</small>"

    table = _table(
        ["colour", "direction", "both", "clips"],
        [
            [
                pct(data.get("color"), data.get("color_clips")),
                pct(data.get("direction"), data.get("direction_clips")),
                pct(data.get("both"), data.get("both_clips")),
                _num(data.get("clips")),
            ]
        ],
    )
    items = data.get("items") or []
    if not items or samples < 1:
        return table
    folder = _find((data.get("source") or {}).get("videos"), bases)

    def verdict(ok: object) -> str:
        return (
            "-"
            if ok is None
            else '<span class="ok">yes</span>'
            if ok
            else '<span class="bad">no</span>'
        )

    rows = []
    for it in items[:samples]:
        path = None if folder is None else _find(it.get("file"), [folder])
        strip = filmstrip(path) if path is not None and path.is_file() else None
        colors = ", ".join(it.get("detected_colors") or [])
        rows.append(
            [
                _e(it.get("file")),
                _e(it.get("prompt")),
                f"{_e(colors or '-')} {verdict(it.get('color_match'))}",
                f"{_e(it.get('detected_direction') or '-')} {verdict(it.get('direction_match'))}",
                strip or "",
            ]
        )
    header = ["file", "prompt", "detected colours", "detected direction", "frames"]
    return table + f"<h3>First {len(rows)} clips</h3>\n" + _table(header, rows, 5)


SECTIONS = {
    "physics": ("Physics velocity error", _physics),
    "fvd": ("FVD", _fvd),
    "adherence": ("Text adherence", _adherence),
}


def render_report(
    paths: Sequence[str | os.PathLike], *, title: str = "kinema evaluation", samples: int = 4
) -> str:
    """The HTML page for the results files ``paths`` (in order); ``samples``: sample clips
    shown per result (0: none)."""
    if not paths:
        raise KinemaError("give at least one results JSON file")
    body = []
    for p in paths:
        kind, data = load_results(p)
        heading, render = SECTIONS[kind]
        bases = [Path.cwd(), Path(p).resolve().parent]  # where the command ran, or beside it
        body.append(
            f"<section>\n<h2>{_e(heading)} <small>{_e(Path(p).name)}</small></h2>\n"
            f"{_source(data)}{render(data, samples, bases)}</section>\n"
        )
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<h1>{_e(title)}</h1>\n<p class="source">{len(paths)} results, written {stamp}</p>\n'
        + "".join(body)
        + "</body>\n</html>\n"
    )


def write_report(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    title: str = "kinema evaluation",
    samples: int = 4,
) -> Path:
    """Render and write the page atomically (a reader never sees half a page)."""
    from kinema.utils.fs import atomic_file

    page = render_report(paths, title=title, samples=samples)
    out = Path(out)
    with atomic_file(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


__all__ = ["bar_chart", "filmstrip", "load_results", "render_report", "result_kind", "write_report"]
