"""What survives an EDL and FCP 7 XML export of an annotated timeline, read back, is what the README says;
a slip that the target cannot carry is refused before any analysis."""

from __future__ import annotations

import opentimelineio as otio
import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main
from otio_lipsync.timeline import COLOURS, KEY

from .test_otio import cache_dir, clips_of, edit, media_dir, model_options  # noqa: F401 - fixtures

pytest.importorskip("otio_cmx3600_adapter", reason="needs the test extra: pip install -e '.[test]'")
pytest.importorskip("otio_fcp_adapter", reason="needs the test extra: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, media_dir, cache_dir):  # noqa: F811
    """The edit annotated with a given delay per verdict colour: 0 ms (GREEN) and 120 ms (YELLOW), slipped."""
    folder = tmp_path_factory.mktemp("exports")
    path = edit(folder, 25.0, media_dir)
    tl = otio.adapters.read_from_file(str(path), adapter_name="lipsync", slip=True, delay_ms=120,
                                      **{**model_options(cache_dir), "quiet": True})
    return folder, tl


def ours(item):
    return [m for m in item.markers if KEY in m.metadata]


def test_edl_keeps_marker_names_upper_cased_and_colours(annotated):
    folder, tl = annotated
    otio.adapters.write_to_file(tl, str(folder / "out.edl"), adapter_name="cmx_3600")
    back = otio.adapters.read_from_file(str(folder / "out.edl"), rate=25)
    video = clips_of(tl, "Video")
    assert [c.parent().kind for c in back.find_clips()] == ["Video"] * len(video)  # no audio track in an EDL
    for before, after in zip(video, back.find_clips()):
        assert [(m.name.upper(), m.color) for m in ours(before)] == [(m.name, m.color) for m in after.markers]
        assert all(KEY not in m.metadata for m in after.markers)


def test_fcp_xml_keeps_names_and_slips_and_the_colour_only_as_the_comment(annotated):
    folder, tl = annotated
    otio.adapters.write_to_file(tl, str(folder / "out.xml"), adapter_name="fcp_xml")
    back = otio.adapters.read_from_file(str(folder / "out.xml"), adapter_name="fcp_xml")
    colours = set()
    for kind in ("Video", "Audio"):
        for before, after in zip(clips_of(tl, kind), clips_of(back, kind)):
            assert [m.name for m in ours(before)] == [m.name for m in after.markers]
            for m_before, m_after in zip(ours(before), after.markers):
                assert m_after.color == otio.schema.MarkerColor.RED  # the adapter has no marker colour
                assert m_after.metadata["fcp_xml"]["comment"].startswith(f"lipsync {m_before.color}: ")
                colours.add(m_before.color)
            if kind == "Audio":
                assert after.source_range.start_time.value == before.source_range.start_time.value  # slipped
    assert {COLOURS["detectable"], COLOURS["slipped"]} <= colours


@pytest.mark.parametrize("flag", ["--slip", "--unslip"])
def test_slip_to_an_edl_is_refused_before_analysis(tmp_path, media_dir, flag):  # noqa: F811
    path = edit(tmp_path, 25.0, media_dir)
    out = tmp_path / "out.edl"
    result = CliRunner().invoke(main, ["otio", str(path), "-o", str(out), flag, "--model", "no-such-model"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"lipsync: {out}: an EDL (cmx_3600) keeps only the video track, so the audio clips' {flag[2:]} would be "
        f"lost; write .otio or FCP 7 XML (.xml), or drop {flag}"]
    assert not out.exists()
