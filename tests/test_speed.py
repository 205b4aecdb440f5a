"""The speed work's behaviour (#23): decoding ahead in a thread, the device choice, small-face tiles skipped in
close-ups. Speeds themselves are measured in benchmarks/, not asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from otio_lipsync import media
from otio_lipsync.cli import main
from otio_lipsync.errors import OptionError, UnreadableMedia
from otio_lipsync.footage import FootageScan
from otio_lipsync.pipeline import make_detector, make_engine, resolve_device

from .conftest import clip, run_ffmpeg


def _chunks(n, size, fail_at=None, closed=None):
    try:
        for i in range(n):
            if i == fail_at:
                raise UnreadableMedia("x.mp4", "decoding failed (test)")
            yield "video", np.full(size, i, np.uint8)
    finally:
        if closed is not None:
            closed.set()


def test_prefetched_keeps_order_raises_in_the_consumer_and_stops_when_closed():
    assert [int(c[1][0]) for c in media.prefetched(_chunks(50, 10), max_bytes=30)] == list(range(50))
    with pytest.raises(UnreadableMedia, match="decoding failed"):
        list(media.prefetched(_chunks(10, 10, fail_at=5)))
    # a consumer that stops early (an error in the pipeline) stops and closes the decoder: no thread left behind
    closed = threading.Event()
    before = threading.active_count()
    it = media.prefetched(_chunks(10_000, 1000, closed=closed), max_bytes=5000)
    next(it)
    it.close()
    assert closed.is_set() and threading.active_count() == before


def test_prefetched_holds_at_most_max_bytes_ahead():
    produced = []

    def counting():
        for i in range(20):
            produced.append(i)
            yield "audio", np.zeros(100, np.uint8)

    it = media.prefetched(counting(), max_bytes=300)
    next(it)
    threading.Event().wait(0.3)  # let the producer run as far as the bound allows
    assert len(produced) <= 1 + 3 + 1  # the one taken, three waiting, one blocked on the bound
    assert len(list(it)) == 19


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are set on Linux only")
def test_decoding_runs_at_a_lower_priority_than_the_analysis_and_leaves_it_alone():
    """The consumer is the pipeline's slower side: the decoding thread (and FFmpeg's frame threads, started from
    it) yield to it. The consumer's own priority is untouched."""
    seen = []

    def chunks():
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yield "audio", np.zeros(10, np.int16)

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert len(list(media.prefetched(chunks()))) == 1
    assert seen == [min(19, mine + media.DECODE_NICE)] and (seen[0] > mine or mine == 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_the_footage_decoder_leaves_the_analysis_a_core_and_its_threads_change_no_pixel():
    """FFmpeg's default (a frame thread per core and one more) made the decoder's threads take turns with the
    analysis on two cores; the scan gives the decoder the cores the analysis thread leaves. Decoding is exact
    whatever the threads: the frames are the same."""
    path = str(clip("synced_mead_m030_01.mp4"))
    stats_default, stats_one = {}, {}
    default = [c for k, c in media.decode(path, info_out=stats_default) if k == "video"]
    one = [c for k, c in media.decode(path, threads=1, info_out=stats_one) if k == "video"]
    assert stats_one["stats"]["decoder_threads"] == 1 and stats_default["stats"]["decoder_threads"] > 1
    assert len(one) == len(default) and all(np.array_equal(a, b) for a, b in zip(one, default))
    scan = FootageScan(path, detector=make_detector())
    for _ in scan:
        pass
    assert scan.decode_stats["decoder_threads"] == max(1, media.usable_cores() - 1)


_FAULTS_OF_A_ROUND = """
import resource, sys
import numpy as np
if sys.argv[1] == "command":
    import otio_lipsync.cli  # the lipsync command's process setup
def faults_of_a_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = [np.ones(200_000, np.uint8) for _ in range(500)]  # 100 MB in frame-sized buffers, all touched
    del held
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_round()
print(faults_of_a_round())
"""


def test_the_command_keeps_freed_buffers_for_the_next_frame_instead_of_faulting_in_fresh_pages():
    """glibc hands big freed blocks back to the kernel, and each new frame-sized buffer came back as fresh pages
    (a page fault per 4 KiB: at 4K, 1.1-1.9 s of a 5.4-6.1 s run). The lipsync command's processes keep them."""
    from otio_lipsync.allocator import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("not glibc: the allocator setting does not apply here")

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS_OF_A_ROUND, mode], capture_output=True, text=True,
                             check=True)
        return int(out.stdout.strip())

    plain, command = faults("plain"), faults("command")
    assert plain > 10_000  # 100 MB through glibc's defaults: fresh pages again on the second round
    assert command < plain / 20


def test_device_auto_takes_the_cpu_here_and_a_missing_gpu_is_one_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the missing-GPU error cannot happen")
    assert resolve_device("auto") == "cpu" and make_engine(None, device="auto").device.type == "cpu"
    with pytest.raises(OptionError, match="--device cuda: torch .* sees no CUDA GPU"):
        make_engine(None, device="cuda")
    with pytest.raises(OptionError, match="must be one of auto, cpu, cuda"):
        resolve_device("tpu")
    source = str(clip("synced_mead_m030_01.mp4"))
    for args in (["check", source], ["score", source], ["fix", source, "-o", str(tmp_path / "fixed.mp4")],
                 ["batch", source, "-o", str(tmp_path / "qc")]):
        result = CliRunner().invoke(main, [*args, "--device", "cuda"])
        assert result.exit_code == 2 and "sees no CUDA GPU" in result.output, (args, result.output)
    assert not (tmp_path / "fixed.mp4").exists() and not (tmp_path / "qc").exists()


def test_a_1080p_close_up_is_not_searched_for_small_faces(ffmpeg_exe, tmp_path):
    """Tiles look for faces too small for the whole-frame pass; behind a face filling a fifth of the frame or
    more they only ever found background (a poster), at ~8 detections a frame."""
    hd = tmp_path / "closeup_1080p.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_w2lgfpgan_presenter_01.mp4")), "-t", "2.2", "-vf",
               "scale=1920:1080,fps=25", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(hd))
    s = FootageScan(str(hd), detector=make_detector())
    for _ in s:
        pass
    assert [t.first for t in s.kept_tracks()] == [0] and s.tiled_frames == 0


def test_tracks_batched_together_give_the_same_answer():
    """`batch_tracks` (on by default on a GPU): all open face tracks' windows in one network call. Forced on
    here on the CPU, a two-face scene gives the same tracks, offsets and distances as one batch per track."""
    from otio_lipsync.footage import analyse_footage

    path = str(clip("multi_faceswapss_two_women_01.mp4"))
    engine = make_engine(None)
    per_track: list = []
    alone, tracks = analyse_footage(path, engine, results_out=per_track)
    engine.batch_tracks = True
    try:
        together: list = []
        batched, tracks_batched = analyse_footage(path, engine, results_out=together)
    finally:
        engine.batch_tracks = False
    assert len(tracks) >= 2 and [t.id for t in tracks] == [t.id for t in tracks_batched]
    assert batched.offset_frames == alone.offset_frames
    for a, b in zip(per_track, together):
        assert a.offset_frames == b.offset_frames
        np.testing.assert_allclose(b.dists, a.dists, rtol=1e-4, atol=1e-5)


def test_the_networks_keep_every_tensor_on_the_device_they_are_given():
    """On CUDA the house model once failed at its first batch: the grey-conversion weights were made on the
    CPU (found on a lent H200). PyTorch's `meta` device checks the same thing here: any tensor a forward pass
    makes without the input's device is on the CPU and mixing it in raises."""
    from otio_lipsync.model.audio import FEATURES
    from otio_lipsync.pipeline import load_model

    net = load_model("house").net.to("meta").eval()
    crops = torch.zeros(1, 3, 9, 224, 224, dtype=torch.uint8, device="meta")  # 9 frames: 5 windows
    with torch.no_grad():
        assert net.forward_lip_runs([crops, crops]).device.type == "meta"
        assert net.forward_lip(torch.zeros(2, 3, 5, 224, 224, device="meta")).shape[0] == 2
        rows = FEATURES[net.audio_feature][0]
        assert net.forward_aud(torch.zeros(4, 1, rows, net.audio_columns, device="meta")).device.type == "meta"
