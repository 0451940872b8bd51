"""`kinema eval report`: one self-contained HTML page (tables, SVG chart, inline sample
frames) from physics / FVD / adherence results, parsed back with html.parser; atomic
writes; one-line errors for foreign or missing files."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema.cli import app, main
from kinema.data.toys import ShapesDataset
from kinema.errors import KinemaError
from kinema.eval.adherence import evaluate_adherence_folder
from kinema.eval.fvd import FVDResult
from kinema.eval.physics_eval import PhysicsResults, PhysicsRow
from kinema.eval.report import render_report, write_report
from kinema.io import to_uint8, write_video

runner = CliRunner()


class Page(HTMLParser):
    """Collects tables (rows of cell texts), tags, attributes and unclosed elements."""

    VOID = {"meta", "img", "br", "hr", "input", "link", "rect", "line"}

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.open: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag not in self.VOID:
            self.open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def physics_results() -> dict:
    rows = [
        PhysicsRow(s, "id", d, 0.5 if d == "alpha" else 0.9, 0.02, 4, 4, 40, 10, 1, 40)
        for s in ("uniform", "collision")
        for d in ("alpha", "threshold")
    ]
    rows[2].error = None  # a scenario nothing was scored in
    return PhysicsResults(rows, 5, 0.1, {"videos": "gone", "scenario": "all"}).to_dict()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """physics.json (rows only), fvd.json and adherence.json pointing at real clips."""
    root = tmp_path_factory.mktemp("report")
    ds = ShapesDataset(3, 32, 9, seed=2)
    clips = root / "clips"
    lines = []
    for i in range(3):
        item = ds[i]
        write_video(clips / f"c{i}.mp4", to_uint8(item["video"]), fps=10)
        prompt = item["caption"] + (" <script>alert(1)</script>" if i == 0 else "")
        lines.append(json.dumps({"file": f"c{i}.mp4", "caption": prompt}))
    (clips / "captions.jsonl").write_text("\n".join(lines))
    files = {
        "physics": physics_results(),
        "fvd": FVDResult(123.456, 3, 3, 16, 400, source={"real": str(clips), "fake": "x"}),
        "adherence": evaluate_adherence_folder(clips),
    }
    out = {}
    for name, r in files.items():
        out[name] = root / f"{name}.json"
        out[name].write_text(json.dumps(r if isinstance(r, dict) else r.to_dict()))
    return out


def test_report_has_every_table_chart_and_inline_frames(results, tmp_path):
    out = tmp_path / "site" / "report.html"
    paths = [str(results[k]) for k in ("physics", "fvd", "adherence")]
    res = runner.invoke(app, ["eval", "report", *paths, "--out", str(out), "--title", "Run <1>"])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    page = Page(text)
    assert page.open == []  # every element closed, in order
    assert "script" not in page.tags and "<title>Run &lt;1&gt;</title>" in text
    physics, fvd, real, summary, samples = page.tables
    assert physics[0][:5] == ["scenario", "split", "detector", "error", "ground-truth floor"]
    assert physics[1][:5] == ["uniform", "id", "alpha", "0.5000", "0.0200"]
    assert physics[3][3] == "-" and len(physics) == 5
    assert fvd[1][:3] == ["123.46", "3", "3"]
    assert real == [["file", "frames"], ["c0.mp4", ""], ["c1.mp4", ""], ["c2.mp4", ""]]
    assert summary[0] == ["colour", "direction", "both", "clips"] and summary[1][-1] == "3"
    assert [r[0] for r in samples[1:]] == ["c0.mp4", "c1.mp4", "c2.mp4"]
    assert "<script>alert(1)</script>" in samples[1][1]  # shown as text, escaped in the HTML
    # the chart: one group per scenario of the primary (alpha) detector, error and floor
    assert page.tags.count("svg") == 1 and page.tags.count("rect") == 3 + 2  # bars + legend
    images = [v for tag, k, v in page.attrs if tag == "img" and k == "src"]
    # 3 adherence clips + the FVD real folder's 3 (its fake folder does not exist)
    assert len(images) == 6 and all(v.startswith("data:image/png;base64,") for v in images)
    links = [v for _, k, v in page.attrs if k in ("src", "href") and not v.startswith("data:")]
    assert links == []  # nothing fetched from anywhere


def test_report_without_samples_and_atomic_write(results, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    text = render_report([results["adherence"]], samples=0)
    assert "<img" not in text and len(Page(text).tables) == 1
    write_report([results["physics"]], out)
    before = out.read_bytes()

    def fail(self, *args, **kwargs):  # the disk fills up half way
        Path.write_bytes(self, b"<html>")
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(OSError, match="No space left"):
        write_report([results["fvd"]], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary left


def test_report_from_results_the_eval_commands_write(tmp_path):
    """physics --json output as is (no metric key): recognised by its rows."""
    data = physics_results()
    assert "metric" not in data
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert "Physics velocity error" in render_report([tmp_path / "p.json"])
    with pytest.raises(KinemaError, match="give at least one results JSON file"):
        render_report([])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "results file '{p}' does not exist"),
        ("{not json", "'{p}' is not JSON"),
        ('{"rows": []}', "'{p}' is not a results file of kinema eval (physics, fvd, adherence"),
        ("[1, 2]", "is not a results file of kinema eval"),
    ],
)
def test_cli_report_bad_input_exits_2_with_one_line(
    tmp_path, monkeypatch, capsys, content, message
):
    p = tmp_path / "r.json"
    if content is not None:
        p.write_text(content)
    out = tmp_path / "out.html"
    monkeypatch.setattr(sys, "argv", ["kinema", "eval", "report", str(p), "--out", str(out)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message.format(p=p) in err and len(err.splitlines()) == 1, err
    assert not out.exists()
