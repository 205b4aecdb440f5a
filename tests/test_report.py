"""The batch summary and HTML report as a reader sees them, and the plots' axes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from .conftest import clip, run_ffmpeg


@pytest.fixture(scope="module")
def batch_out(tmp_path_factory, ffmpeg_exe, stand_in_path):
    """Two face crops in two folders and a broken file, with --standard: a real batch run."""
    d = tmp_path_factory.mktemp("report")
    for sub, name in (("day1", "synced_lrs2_demo00001_01.mp4"), ("day2", "synced_lrs2_demo00004_01.mp4")):
        (d / "media" / sub).mkdir(parents=True)
        run_ffmpeg(ffmpeg_exe, "-i", str(clip(name)), "-t", "2", "-c", "copy", str(d / "media" / sub / "take.mp4"))
    (d / "media" / "day2" / "broken.mp4").write_bytes(b"not a video" * 100)
    proc = subprocess.run([sys.executable, "-m", "otio_lipsync", "batch", str(d / "media"), "-o", str(d / "qc"),
                           "--face-cropped", "--model", str(stand_in_path), "--standard", "bt1359", "--workers", "1",
                           "--threads", "1", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode in (1, 2), proc.stderr
    return d


def test_summary_counts_every_measured_item(batch_out):
    summary = json.loads((batch_out / "qc" / "summary.json").read_text())
    assert summary["items"] == 3 and summary["failed"] == 1
    assert summary["measured"] == 2 == summary["pass"] + summary["out_of_tolerance"] + summary["warning"]


def test_report_rows_are_compact_relative_and_explained(batch_out):
    page = (batch_out / "qc" / "report.html").read_text()
    rows = re.findall(r"<tr style=.*?</tr>", page, re.S)
    assert len(rows) == 3 and all("\n" not in row for row in rows)  # one line per item
    assert f"relative to <code>{batch_out / 'media'}</code>" in page
    cells = [re.findall(r"<td>(.*?)</td>", row)[0] for row in rows]
    assert sorted(cells) == ["day1/take.mp4", "day2/broken.mp4", "day2/take.mp4"]
    assert str(batch_out) not in "".join(rows)  # the error of the broken file too
    assert "not a readable media file" in "".join(rows)
    for row in rows:
        if "take.mp4" in row:
            assert "<details><summary>plot</summary><img" in row  # the plot opens on click
            notes = re.findall(r"<td>(.*?)</td>", row)[5]  # file, status, delay, confidence, p(sync), notes
            assert notes and notes != "insufficient" and " " in notes  # words, not a bare verdict


def _analysis(delays_ms, framewise):
    spans = [{"start_s": 5.0 * i, "end_s": 5.0 * i + 10, "audio_delay_ms": d, "offset_frames": 0,
              "confidence": 5.0} for i, d in enumerate(delays_ms)]
    return SimpleNamespace(file="flat.mp4", audio_delay_ms=delays_ms[0], framewise_confidence=framewise,
                           drift={"spans": spans, "ms_per_minute": 0.0, "verdict": "constant"})


def test_flat_file_gets_at_least_one_frame_either_side_and_gaps_break_the_line():
    import matplotlib.pyplot as plt

    from otio_lipsync.ffmpeg_filter.plot import figure

    framewise = [4.0] * 50 + [None] * 30 + [5.0] * 50  # no face for 30 frames
    fig = figure(_analysis([0.0, 0.0, 0.0], framewise))
    try:
        top, bottom = fig.axes
        lo, hi = top.get_ylim()
        assert lo <= -40 and hi >= 40 and hi - lo < 200
        (line,) = [ln for ln in bottom.get_lines() if ln.get_label() == "per-frame confidence"]
        y = list(line.get_ydata())
        assert len(y) == len(framewise) and all(math.isnan(v) for v in y[50:80])
    finally:
        plt.close(fig)
    fig = figure(_analysis([0.0, 200.0, 400.0], [1.0] * 10))  # real spread: the data sets the axis
    try:
        lo, hi = fig.axes[0].get_ylim()
        assert lo <= 0 and hi >= 400 and hi - lo < 600
    finally:
        plt.close(fig)
