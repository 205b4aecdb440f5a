"""The `lipsync` command line. Thin: parse options, call the API (api.py, pipeline.py), print its result, and
turn its LipsyncErrors into one line and an exit code (0 ok, 1 out of a --standard's tolerance, 2 an error).
A leaf: nothing in the package imports this module (tests/test_architecture.py checks)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile

import click

from . import __version__
from .allocator import keep_freed_memory
from .errors import error_entry

# Raw footage decodes on one core while torch runs on both: OpenMP threads that spin-wait between torch's
# parallel regions take the decoder's core (1080p25, 2 cores: 5.9 -> 5.5 s). Read once, when torch loads,
# which this module never does at import; a value the user set is kept. Batch workers inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# freed frame buffers are kept for the next frame instead of coming back as fresh pages (allocator.py)
keep_freed_memory()

# the names are sync.PRECISIONS' (not imported here: --help stays fast without torch; a test keeps them equal)
PRECISION = click.Choice(["float32", "bfloat16", "int8"])
PRECISION_HELP = ("float32 keeps parity with syncnet_python. bfloat16 runs the lip tower ~1.5-1.8x faster on CPUs "
                  "with native bf16 (AVX512-BF16/AMX); confidences move by up to ~1%. int8 (SyncNet-format "
                  "weights, CPU) runs it quantized, ~3x float32 on CPUs with VNNI (~1.6x without): the same "
                  "offsets on the golden clips, confidences lower (README: Speed).")
PRECISION_OPTION = click.option("--precision", type=PRECISION, default="float32", show_default=True,
                                help=PRECISION_HELP)

DEVICE_OPTION = click.option(
    "--device", default="cpu", show_default=True, metavar="cpu|cuda|auto",
    help="Where the network runs: auto takes a CUDA GPU when torch sees one (decoding and face detection stay "
         "on the CPU).")

DETECT_EVERY = 2  # FootageOptions.detect_every (not imported here, as PRECISION; a test keeps them equal)

EXIT_OK = 0
EXIT_FAIL = 1  # measured, but out of the --standard's tolerance
EXIT_ERROR = 2  # bad input or bad model


def _fail(message) -> None:
    """One line on stderr (`lipsync: ` + the message, or a LipsyncError's line), exit 2."""
    _echo_err(f"lipsync: {message}")
    sys.exit(EXIT_ERROR)


def _standard_names() -> list[str]:
    from .ffmpeg_filter.qc import STANDARDS

    return list(STANDARDS)


def _detector_names() -> list[str]:
    from .faces.detectors import DETECTORS

    return list(DETECTORS)


def _echo_err(line: str) -> None:
    """A line for the user on stderr, copied to the --log file."""
    from .logs import echo_logger

    click.echo(line, err=True)
    echo_logger.info(line)


def check_targets(*targets) -> None:
    """Refuse, before any work, each output option that cannot be written (a directory, a missing folder)."""
    from .errors import OutputError
    from .outputs import check_target

    for target in targets:
        if target is not None:
            try:
                check_target(target)
            except OutputError as exc:
                _fail(str(exc))


def write_json_atomic(path: str, payload) -> None:
    """outputs.write_json_atomic; a file that cannot be written: one line, exit 2."""
    from .errors import LipsyncError
    from .outputs import write_json_atomic as write

    try:
        write(path, payload)
    except LipsyncError as exc:
        _fail(str(exc))


def load_engine(model_name: str | None, vshift: int | None = None, batch_size: int | None = None,
                threads: int | None = None, precision: str = "float32", max_offset_ms: float | None = None,
                device: str = "cpu"):
    """pipeline.make_engine; a bad option or model: one line, exit 2."""
    from .errors import LipsyncError
    from .pipeline import make_engine

    try:
        return make_engine(model_name, vshift=vshift, max_offset_ms=max_offset_ms, batch_size=batch_size,
                           threads=threads, precision=precision, device=device)
    except LipsyncError as exc:
        _fail(str(exc))


def make_detector(name: str = "blazeface"):
    """pipeline.make_detector; a detector that cannot run: one line, exit 2."""
    from .errors import LipsyncError
    from .pipeline import make_detector as make

    try:
        return make(name)
    except LipsyncError as exc:
        _fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lipsync")
@click.option("-v", "--verbose", is_flag=True,
              help="Show third-party warnings and log lines (hidden by default), e.g. the face detector runtime's.")
@click.option("--log", "log_path", metavar="FILE", type=click.Path(dir_okay=False), default=None,
              help="Append a log to FILE: the command line, what lipsync prints on stderr, third-party warnings "
                   "and log lines (with or without -v).")
def main(verbose, log_path):
    """Measure and fix lip sync (audio/video offset) with SyncNet.

    \b
    Examples:
      lipsync check interview.mp4                  # raw footage: faces are found and tracked
      lipsync check --json report.json footage/    # a folder, searched recursively
      lipsync fix interview.mp4 -o fixed.mp4       # measure, then write a copy in sync
      lipsync check --face-cropped crop.mp4        # frames that are already a face crop
      lipsync models
    """
    import shlex

    from .logs import configure, echo_logger

    try:
        configure(verbose, log_path)
    except OSError as exc:
        _fail(f"--log {log_path}: cannot write it ({exc.strerror or exc})")
    echo_logger.info("lipsync %s: %s", __version__, shlex.join(sys.argv[1:]))


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--face-cropped", is_flag=True,
              help="The footage is already a face crop (the whole frame is the face); frames that are "
                   "not 224x224 are resized. Without it: shots, face detection, tracks, per-face sync, "
                   "active speakers.")
@click.option("--model", "model_name", metavar="NAME|PATH", default=None,
              help="Model name (see `lipsync models`) or path to a model file. Default: house (ships in the package).")
@click.option("--json", "json_path", metavar="PATH|-", default=None,
              help="Write a JSON array with one object per file to PATH, or to stdout with `-` "
                   "(the one-line summaries then go to stderr).")
@click.option("--reference-decode", is_flag=True,
              help="Decode exactly as syncnet_python does (ffmpeg -> JPEG files -> libjpeg; ffmpeg -> WAV) "
                   "to reproduce its numbers. Slower; needs the same ffmpeg build for identical results.")
@click.option("--ffmpeg", "ffmpeg_path", metavar="PATH", default=None,
              help="ffmpeg binary for --reference-decode (default: $FFMPEG_PATH, `ffmpeg` on PATH, imageio-ffmpeg).")
@click.option("--max-offset-ms", type=float, default=None, metavar="MS",
              help="Search offsets of +-MS milliseconds (whole 40 ms frames, rounded up). Default: 1000, the "
                   "paper's +-1 s (syncnet_v2: 600, syncnet_python's +-15 frames, for parity).")
@click.option("--vshift", type=int, default=None, metavar="N",
              help="The same range in frames at 25 fps (syncnet_python's spelling; 25 = 1000 ms).")
@click.option("--batch-size", default=16, show_default=True, help="Windows per network batch (memory grows with it).")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: all cores).")
@PRECISION_OPTION
@DEVICE_OPTION
@click.option("--audio-stream", default=0, show_default=True, help="Index of the audio stream to analyse.")
@click.option("--channel", type=int, default=None, metavar="N",
              help="Analyse channel N (from 0) of that stream alone, e.g. the dialogue channel of a 5.1 mix or "
                   "one language of a dual-mono track. Default: the mono downmix of all channels.")
@click.option("-q", "--quiet", is_flag=True, help="No per-file summary lines.")
@click.option("--detector", default="blazeface", show_default=True, type=click.Choice(_detector_names()),
              help="Raw footage: face detector. face_alignment (S3FD, the reference's) needs the optional extra "
                   "and its weights placed by hand.")
@click.option("--detect-every", default=DETECT_EVERY, show_default=True, metavar="N",
              help="Raw footage: run the face detector on every N-th frame (and after a likely cut), track in "
                   "between. 1 is the reference's cadence, twice the detector time of the default.")
@click.option("--min-track", default=100, show_default=True, metavar="FRAMES",
              help="Raw footage: shortest face track kept (the reference's 100; a shorter shot needs half its length).")
@click.option("--min-face", default=40.0, show_default=True, metavar="PX", help="Raw footage: smallest face kept.")
@click.option("--max-missed", default=25, show_default=True, metavar="FRAMES",
              help="Raw footage: frames without a detection before a track ends.")
@click.option("--crop-scale", default=0.4, show_default=True, help="Raw footage: crop padding (reference 0.4).")
@click.option("--shot-threshold", default=27.0, show_default=True,
              help="Raw footage: content change (mean HSV difference) that makes a cut.")
@click.option("--tiles", type=click.Choice(["auto", "always", "off"]), default="auto", show_default=True,
              help="Raw footage: small faces (wide shots, down to ~40 px in 1080p). auto: frames of 960 px and more are "
                   "searched on 6 tiles every 2 s, and every 4th frame while the tiles find faces the whole-frame "
                   "pass misses: about 2x slower on such shots, nothing on close-ups; always: tiles on every "
                   "detection frame (~4x slower); off: whole frame only.")
@click.option("--annotate", metavar="OUT.mp4", default=None,
              help="Raw footage: write a review video with face boxes, track ids, speaking state and offsets "
                   "drawn on it (with several files: a folder, one video per file).")
@click.option("--standard", type=click.Choice(_standard_names()), default=None,
              help="QC verdict against a timing standard: exit 0 when every file passes, 1 when any fails, "
                   "2 when any could not be measured.")
@click.option("--plot", "plot_path", metavar="PNG", default=None,
              help="Draw offset and confidence over time (with several files: a folder, one PNG per file).")
@click.option("--speaking-threshold", default=0.9, show_default=True, type=click.FloatRange(0, 1),
              help="Raw footage: during speech the likeliest face in view is the speaker; a second face counts "
                   "as speaking at the same moment only at this speaking probability or above.")
def check(files, face_cropped, model_name, json_path, reference_decode, ffmpeg_path, max_offset_ms, vshift, batch_size,
          threads, precision, device, audio_stream, channel, quiet, detector, detect_every, min_track, min_face, max_missed, crop_scale,
          shot_threshold, tiles, annotate, standard, plot_path, speaking_threshold):
    """Measure the audio/video offset of each FILE (or of every media file in a folder, recursively).

    \b
    Examples:
      lipsync check interview.mp4
      lipsync check --json report.json --plot plots/ footage/
      lipsync check -q --json - interview.mp4 | jq '.[0].audio_delay_ms'
      lipsync check --standard ebu-r37 interview.mp4
      lipsync check --face-cropped crop.mp4        # only for frames that are already a face crop

    Prints one line per file, e.g. `a.mp4: audio 120 ms late (-3 frames at 25 fps), confidence 7.41`,
    and the drift over time when the file is long enough to tell. offset_frames follows syncnet_python's
    sign (negative: the audio lags); audio_delay_ms is positive when the sound comes after the picture.
    FILE may be `-` to read a stream from stdin (e.g. `ffmpeg -i in.mxf -f matroska - | lipsync check -`).

    Exit code 0 when every file was measured (and, with --standard, passed), 1 when a measured file
    failed the --standard, 2 when any could not be measured (each failure is reported on its own line
    and the other files are still measured).
    """
    if annotate and face_cropped:
        _fail("--annotate draws face tracks: use it on raw footage (without --face-cropped)")
    if reference_decode and channel is not None:
        _fail("--channel is not part of syncnet_python's input path: drop it with --reference-decode")
    if reference_decode and not face_cropped:
        _fail("--reference-decode reproduces syncnet_python's face-crop input path: use it with --face-cropped")
    from .inputs import check_inputs

    check_targets(json_path)
    files, bad_inputs = check_inputs(files)  # before any model loads: a typo costs no seconds
    for exc in bad_inputs.values():
        _echo_err(str(exc))
    if len(bad_inputs) == len(files):  # nothing to measure: say so without loading anything
        if json_path:
            write_json_atomic(json_path, [error_entry(p, e) for p, e in bad_inputs.items()])
        _fail(f"{len(files)} of {len(files)} file(s) could not be measured")
    from tqdm import tqdm

    from .errors import LipsyncError
    from .faces.tracks import TrackOptions
    from .footage import FootageOptions
    from .pipeline import measure
    from .speakers import SpeakerOptions

    engine = load_engine(model_name, vshift, batch_size, threads, precision, max_offset_ms, device)
    detector_name, detector, footage_options = detector, None, None
    if not face_cropped:
        footage_options = FootageOptions(
            detect_every=detect_every, shot_threshold=shot_threshold, detector=detector_name, tiles=tiles,
            tracks=TrackOptions(max_missed=max_missed, min_track_frames=min_track, min_face_px=min_face,
                                crop_scale=crop_scale),
            speakers=SpeakerOptions(threshold=speaking_threshold))
        detector = make_detector(footage_options.detector)
    from .ffmpeg_filter import qc

    qc_standard = qc.STANDARDS[standard] if standard else None
    human = sys.stderr if json_path == "-" else sys.stdout
    results, failed, out_of_tolerance = [], 0, 0
    for path in tqdm(files, desc="lipsync check", unit="file", disable=None if len(files) > 1 else True,
                     file=sys.stderr, leave=False):
        if path in bad_inputs:
            failed += 1
            exc = bad_inputs[path]
            results.append(error_entry(path, exc))
            continue
        try:
            analysis, tracks = measure(path, engine, face_cropped, footage_options, detector, audio_stream,
                                       reference_decode=reference_decode, ffmpeg=ffmpeg_path, progress=not quiet,
                                       channel=channel)
            if annotate:
                from .review_video import write_review_video

                target = per_file_target(annotate, path, len(files), ".review.mp4")
                write_review_video(path, analysis, tracks, target, crop_scale=crop_scale)
                click.echo(f"{path}: review video written to {target}", file=sys.stderr)
            if plot_path:
                from .ffmpeg_filter.plot import plot_analysis

                plot_analysis(analysis, per_file_target(plot_path, path, len(files), ".png"), qc_standard)
        except LipsyncError as exc:
            failed += 1
            _echo_err(str(exc))
            results.append(error_entry(path, exc, no_face_verdict=True))
            continue
        entry = analysis.to_dict()
        if qc_standard:
            entry["qc"] = qc.verdict(qc_standard, analysis.audio_delay_ms, analysis.drift, analysis.verdict)
            out_of_tolerance += not entry["qc"]["pass"]
        results.append(entry)
        if not quiet:
            click.echo(analysis.summary(), file=human)
            if analysis.drift and (analysis.drift["verdict"] != "insufficient"
                                   or "disagree" in analysis.drift.get("reason", "")):
                from .drift import Drift

                click.echo(f"  {Drift(**analysis.drift).describe()}", file=human)
            if qc_standard:
                click.echo(f"  {qc.describe(entry['qc'])}", file=human)
    if json_path:
        write_json_atomic(json_path, results)
    if failed:
        _echo_err(f"lipsync: {failed} of {len(files)} file(s) could not be measured")
        sys.exit(EXIT_ERROR)
    if out_of_tolerance:
        _echo_err(f"lipsync: {out_of_tolerance} of {len(files)} file(s) fail {qc_standard.name}")
        sys.exit(EXIT_FAIL)


def per_file_target(option: str, path: str, num_files: int, suffix: str) -> str:
    """The option's file for one input; with several (or a folder given, or a name ending in /),
    <stem><suffix> in that folder."""
    if num_files == 1 and not os.path.isdir(option) and not option.endswith(("/", os.sep)):
        return option
    os.makedirs(option, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0] if path != "-" else "stdin"
    return os.path.join(option, f"{stem}{suffix}")


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable listing.")
@click.pass_context
def models(ctx, as_json):
    """List known and installed models, and where each is looked for."""
    if ctx.invoked_subcommand:
        return
    from .model import registry

    rows = registry.listing()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "*" if row["default"] else " "
        where = row["path"] if row["installed"] else "not installed"
        click.echo(f"{mark} {row['name']:<16} {where}")
        if row["description"]:
            click.echo(f"    {row['description']}")
        if row["how_to_get"]:
            click.echo(f"    {row['how_to_get']}")
    click.echo("searched: " + ", ".join(str(d) for d in registry.search_dirs()))


@models.command("download")
@click.argument("name")
@click.option("--url", default=None, help="Download from this URL instead of the published location.")
@click.option("--deadline", default=None, type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up (exit 2, nothing kept) when the whole download takes longer (default 900).")
def models_download(name, url, deadline):
    """Download model NAME into the user cache (it must load before it is kept)."""
    from tqdm import tqdm

    from .children import exit_on_sigterm
    from .model import BadWeights, ModelNotFound, registry

    exit_on_sigterm()  # a TERM removes the partial download
    bar = tqdm(unit="B", unit_scale=True, desc=name, file=sys.stderr, disable=None)

    def progress(n, total):
        bar.total = total or None
        bar.update(n)

    try:
        target = registry.download(name, url=url, progress=progress,
                                   deadline_s=deadline or registry.DOWNLOAD_DEADLINE_S)
    except (ModelNotFound, BadWeights) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"download of {name!r} failed: {exc}")
    finally:
        bar.close()
    click.echo(f"{name}: saved to {target}")


@main.command()
@click.argument("source", type=click.Path())
@click.option("-o", "--output", "target", required=True, type=click.Path(), help="The corrected copy to write.")
@click.option("--delay-ms", default="auto", show_default=True, metavar="auto|N",
              help="Audio delay to remove, as `check` reports it (positive: the sound is late, so it is moved "
                   "earlier). auto: measure SOURCE first.")
@click.option("--method", type=click.Choice(["copy", "reencode"]), default="copy", show_default=True,
              help="copy: shift the audio's timestamps, no re-encoding; reencode: atrim/adelay + apad, same duration.")
@click.option("-n", "--dry-run", is_flag=True, help="Print the ffmpeg command and stop.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists (without it an existing OUT is refused).")
@click.option("--face-cropped", is_flag=True, help="Measure as face-cropped footage (see `check --help`).")
@click.option("--model", "model_name", metavar="NAME|PATH", default=None, help="Model for measuring (auto and residual).")
@PRECISION_OPTION
@DEVICE_OPTION
@click.option("--audio-stream", default=0, show_default=True, help="Index of the audio stream to shift.")
@click.option("--channel", type=int, default=None, metavar="N",
              help="Measure on channel N (from 0) of that stream alone (e.g. the dialogue channel of a 5.1 mix); "
                   "the whole stream is still shifted. Default: the mono downmix.")
@click.option("--ffmpeg", "ffmpeg_path", metavar="PATH", default=None,
              help="ffmpeg binary (default: $FFMPEG_PATH, else imageio-ffmpeg's).")
@click.option("--no-verify", is_flag=True, help="Do not re-measure OUT after writing it.")
def fix(source, target, delay_ms, method, dry_run, force, face_cropped, model_name, precision, device, audio_stream,
        channel, ffmpeg_path, no_verify):
    """Write a copy of SOURCE with its audio shifted into sync; the video is copied bit-exact.

    SOURCE and OUTPUT may be `-` (stdin / stdout, Matroska on stdout) to sit in an ffmpeg pipe:
    `ffmpeg -i in.mxf -c copy -f matroska - | lipsync fix - -o - | ffmpeg -i - ...`

    \b
    Examples:
      lipsync fix in.mov -o fixed.mov                      # measure, then correct
      lipsync fix in.mp4 -o fixed.mp4 --delay-ms 120       # the sound is 120 ms late
      lipsync fix in.mxf -o fixed.mxf --delay-ms -40 --method reencode --dry-run
      lipsync fix in.mov -o fixed.mov -f                   # replace an existing fixed.mov

    Exit code 0 when OUT was written (or, with -n, the command printed), 2 when it was not: SOURCE
    unreadable, OUT exists (without -f) or is SOURCE, ffmpeg failed.
    """
    import shlex

    from .api import fix as fix_file
    from .errors import LipsyncError, NoSync

    check_targets(target)
    if source != "-" and not os.path.exists(source):
        _fail(f"{source}: no such file")
    if target != "-" and os.path.exists(target) and not force and not (
            source != "-" and os.path.exists(source) and os.path.samefile(source, target)):  # that: plan_fix says
        _fail(f"{target}: exists; refusing to overwrite it without -f/--force")
    engine = None
    needs_model = delay_ms == "auto" or not (no_verify or dry_run)
    detector = None
    if needs_model:  # before a pipe is read: a bad model costs no spooling
        engine = load_engine(model_name, precision=precision, device=device)
        if not face_cropped:
            detector = make_detector()
    say = functools.partial(click.echo, err=target == "-")  # stdout may be the video itself
    from .children import exit_on_sigterm
    from .outputs import sweep_stale

    exit_on_sigterm()  # a TERM removes the work folder and the partial output, and stops ffmpeg
    sweep_stale(tempfile.gettempdir(), "lipsync-fix-")  # work folders of fixes killed with -9
    try:
        with tempfile.TemporaryDirectory(prefix=f"lipsync-fix-{os.getpid()}-") as work:
            source_path, target_path = source, target
            if source == "-":  # a pipe can be read once; measuring and writing both need it
                source_path = os.path.join(work, "stdin.mkv")
                with open(source_path, "wb") as spool:
                    shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
            if target == "-":
                target_path = os.path.join(work, "out.mkv")
            # overwrite=True: the checks above already said whether OUT may be replaced
            result = fix_file(
                source_path, target_path, delay_ms=delay_ms, method=method, model=engine, face_cropped=face_cropped,
                precision=precision, device=device, audio_stream=audio_stream, channel=channel, ffmpeg=ffmpeg_path,
                verify=not no_verify, overwrite=True, dry_run=dry_run, detector=detector,
                on_measured=lambda before: click.echo(before.summary().replace(source_path, source, 1), err=True),
                on_written=lambda shift: say(f"{source}: audio moved {abs(shift):.0f} ms "
                                             f"{'earlier' if shift > 0 else 'later'} ({method}) -> {target}"))
            if dry_run:
                click.echo(shlex.join(result.command + [target_path]))
                return
            if result.after:
                after = result.after
                say(f"{target}: residual {after.audio_delay_ms:+.0f} ms "
                    f"({after.offset_frames:+d} frames), confidence {after.confidence:.2f}")
            if target == "-":
                with open(target_path, "rb") as done:
                    shutil.copyfileobj(done, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
    except NoSync as exc:  # named as the user gave it (`-`), not as the spooled copy
        _fail(str(NoSync(source, exc.problem)))
    except LipsyncError as exc:
        _fail(str(exc))


# --- lipsync score ----------------------------------------------------------------------------

def _score_metric_names():
    from .metrics import METRICS

    return list(METRICS)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--metric", "metric_name", type=click.Choice(_score_metric_names()), default="lse", show_default=True,
              help="lse: LSE-D and LSE-C as Wav2Lip's evaluation scripts compute them on syncnet_python; "
                   "icsyncnet: probability at offset and offscreen ratio (IC-SyncNet), with a model trained "
                   "with `lipsync-train fit --objective icsyncnet`.")
@click.option("--face-cropped", is_flag=True,
              help="Every file is a face crop (as calculate_scores_LRS.py assumes); without it each file goes "
                   "through shots, face detection and tracks, and every face track is scored.")
@click.option("--model", "model_name", metavar="NAME|PATH", default=None,
              help="Model name or file. lse: default syncnet_v2, what published LSE numbers use (install it "
                   "first, see `lipsync models`); `--model house` scores with the packaged model (not comparable "
                   "to papers). icsyncnet: required, a model exported from an --objective icsyncnet run.")
@click.option("--reference-decode", is_flag=True,
              help="Decode as the evaluation scripts do (ffmpeg -> JPEG files -> libjpeg; ffmpeg -> WAV): the "
                   "numbers to compare with published LSE tables. Needs --face-cropped.")
@click.option("--ffmpeg", "ffmpeg_path", metavar="PATH", default=None, help="ffmpeg binary for --reference-decode.")
@click.option("--json", "json_path", metavar="PATH|-", default=None,
              help="Write {summary, files} as JSON to PATH, or to stdout with `-` (the table then goes to stderr).")
@click.option("--csv", "csv_path", metavar="PATH", default=None,
              help="Write one CSV row per file (and per face track of raw footage).")
@click.option("--vshift", default=15, show_default=True, help="Search offsets of +-N frames (the scripts' 15).")  # metrics.SCORE_VSHIFT
@click.option("--batch-size", default=16, show_default=True, help="Windows per network batch.")
@click.option("--threads", type=int, default=None, help="Torch CPU threads (default: all cores).")
@DEVICE_OPTION
@click.option("--audio-stream", default=0, show_default=True, help="Index of the audio stream to analyse.")
@click.option("--channel", type=int, default=None, metavar="N", help="Analyse channel N of that stream alone.")
@click.option("--detector", default="blazeface", show_default=True, type=click.Choice(_detector_names()),
              help="Raw footage: face detector (face_alignment = S3FD, the reference pipeline's).")
@click.option("--detect-every", default=DETECT_EVERY, show_default=True, metavar="N",
              help="Raw footage: detect every N-th frame.")
@click.option("--min-track", default=100, show_default=True, metavar="FRAMES", help="Raw footage: shortest track kept.")
@click.option("--min-face", default=40.0, show_default=True, metavar="PX", help="Raw footage: smallest face kept.")
@click.option("--filter", "filter_path", metavar="PATH", default=None,
              help="icsyncnet: write the files that pass IC-SyncNet's dataset rule (probability at offset >= "
                   "--min-probability and offscreen ratio <= --max-offscreen) to PATH, one per line.")
@click.option("--min-probability", default=0.9, show_default=True, help="--filter: least probability at offset.")
@click.option("--max-offscreen", default=0.2, show_default=True, help="--filter: largest offscreen ratio.")
def score(files, metric_name, face_cropped, model_name, reference_decode, ffmpeg_path, json_path, csv_path, vshift,
          batch_size, threads, device, audio_stream, channel, detector, detect_every, min_track, min_face, filter_path,
          min_probability, max_offscreen):
    """Score lip-sync quality of FILES (files or folders, searched recursively for videos).

    Prints a table of LSE-D (lower is better) and LSE-C (higher is better) per file and their means.
    Files that cannot be scored get one line each naming the file and the problem; the others are
    still scored; the exit code is then 2.

    With --metric icsyncnet: the probability that each face track is in sync at its best offset and
    the share of its windows whose speech does not match the mouth; --filter writes the files that
    pass IC-SyncNet's rule, the way to clean footage before training a house model.

    \b
    Examples:
      lipsync score --face-cropped --reference-decode generated/      # compare with published tables
      lipsync score --face-cropped --csv scores.csv --json - results/
      lipsync score --metric icsyncnet --model ic.model --filter keep.txt footage/
    """
    import csv
    import io

    from tqdm import tqdm

    from .api import score_file
    from .errors import LipsyncError
    from .inputs import expand_inputs
    from .metrics import SCHEMA, csv_rows, get_metric, summarise, table

    metric = get_metric(metric_name)
    if reference_decode and not face_cropped:
        _fail("--reference-decode reproduces syncnet_python's face-crop input path: use it with --face-cropped")
    if reference_decode and channel is not None:
        _fail("--channel is not part of syncnet_python's input path: drop it with --reference-decode")
    check_targets(json_path, csv_path, filter_path)
    paths = expand_inputs(files)
    if not paths:
        _fail(f"no video files found in {', '.join(files)}")
    if filter_path and not metric.needs_probability:
        _fail("--filter applies IC-SyncNet's rule: use it with --metric icsyncnet")
    if not (model_name or metric.default_model):
        _fail(f"--metric {metric.name} needs --model: a model exported from `lipsync-train fit --objective "
              f"icsyncnet` (the packaged house model gives distances only)")
    engine = load_engine(model_name or metric.default_model, vshift, batch_size, threads, device=device)
    from .metrics import check_model

    try:
        check_model(metric, engine.model)
    except LipsyncError as exc:  # NoSyncProbability
        _fail(str(exc))
    footage_options, face_detector = None, None
    if not face_cropped:
        from .faces.tracks import TrackOptions
        from .footage import FootageOptions

        footage_options = FootageOptions(detect_every=detect_every, detector=detector,
                                         tracks=TrackOptions(min_track_frames=min_track, min_face_px=min_face))
        face_detector = make_detector(detector)
    scores, entries, failed = [], [], 0
    bar = tqdm(paths, desc=f"lipsync score ({metric.name})", unit="file", file=sys.stderr, leave=False,
               disable=None if len(paths) > 1 else True)
    for path in bar:
        try:
            s = score_file(path, engine, metric, face_cropped, footage_options, face_detector,
                           reference_decode=reference_decode, ffmpeg=ffmpeg_path, audio_stream=audio_stream,
                           channel=channel)
        except LipsyncError as exc:
            failed += 1
            tqdm.write(f"{exc}", file=sys.stderr)
            entries.append(error_entry(path, exc))
            continue
        scores.append(s)
        entries.append(s.to_dict())
    bar.close()
    summary = summarise(metric, scores, failed)
    model = scores[0].model if scores else (engine.model.describe() if engine.model else {})
    if scores:
        click.echo(table(metric, scores, summary), file=sys.stderr if json_path == "-" else sys.stdout)
    if json_path:
        write_json_atomic(json_path, {"schema": SCHEMA, "metric": metric.name, "model": model,
                                      "decode": "reference" if reference_decode else "direct",
                                      "summary": summary, "files": entries})
    if csv_path:
        from .outputs import atomic_output

        header, rows = csv_rows(metric, entries)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        with atomic_output(csv_path, ".csv") as tmp, open(tmp, "w", newline="") as f:
            f.write(buffer.getvalue())
    if filter_path:
        from .outputs import atomic_output
        from .metrics import passes_filter

        kept = [sc.file for sc in scores if passes_filter(sc.values, min_probability, max_offscreen)]
        with atomic_output(filter_path, ".txt") as tmp, open(tmp, "w") as f:
            f.writelines(f"{k}\n" for k in kept)
        click.echo(f"lipsync: {len(kept)} of {len(paths)} file(s) pass (probability at offset >= {min_probability}, "
                   f"offscreen ratio <= {max_offscreen}): {filter_path}", err=True)
    if failed:
        click.echo(f"lipsync: {failed} of {len(paths)} file(s) could not be scored", err=True)
        sys.exit(EXIT_ERROR)


# --- lipsync otio: the OTIO adapter for people who never touch otioconvert -------------------------

# writers that keep only the video track: a slip (of the audio clips) cannot reach their files
VIDEO_ONLY_WRITERS = {"cmx_3600": "an EDL (cmx_3600) keeps only the video track"}


@main.command("otio")
@click.argument("source", type=click.Path())
@click.option("-o", "--output", "target", required=True, type=click.Path(),
              help="The annotated timeline to write (its format by suffix: .otio, .edl, .xml, ...).")
@click.option("--slip", is_flag=True, help="Shift each paired audio clip's source start by the measured delay.")
@click.option("--unslip", is_flag=True, help="Restore the source starts a previous --slip changed (no analysis).")
@click.option("--json", "json_path", metavar="PATH|-", default=None, help="Write a JSON report (per clip, summary).")
@click.option("--media-root", type=click.Path(), default=None,
              help="Look up relative media paths here first, then beside the timeline file.")
@click.option("--cache-dir", type=click.Path(), default=None,
              help="Analysis cache (default ~/.cache/otio-lipsync/analyses; `none` disables it).")
@click.option("--model", "model_name", metavar="NAME|PATH", default=None, help="Model name or file.")
@click.option("--min-confidence", default=3.0, show_default=True,
              help="Below it a measurement is marked `low conf` and never slipped.")
@click.option("--slip-min-confidence", type=float, default=None,
              help="Confidence needed to slip (default: --min-confidence).")
@click.option("--face-cropped", is_flag=True, help="The media is already a face crop (default: raw footage).")
@click.option("--handle", "handle_s", default=0.5, show_default=True, help="Seconds decoded around each clip's range.")
@click.option("--delay-ms", type=float, default=None,
              help="Do not measure: take this delay (positive: sound late) for every clip.")
@click.option("--source-adapter", default=None, help="OTIO adapter that reads SOURCE (default: by its suffix).")
@click.option("--source-arg", "source_args", multiple=True, metavar="KEY=VALUE",
              help="Argument for the reading adapter, e.g. --source-arg rate=25 for an EDL (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No per-clip progress lines.")
def otio_command(source, target, slip, unslip, json_path, media_root, cache_dir, model_name, min_confidence,
                 slip_min_confidence, face_cropped, handle_s, delay_ms, source_adapter, source_args, quiet):
    """Annotate every clip of the timeline SOURCE with lip-sync markers and write it to OUTPUT.

    \b
    Examples:
      lipsync otio edit.otio -o checked.otio --json report.json
      lipsync otio edit.edl --source-arg rate=25 -o fixed.otio --slip
      lipsync otio fixed.otio -o back.otio --unslip
    Exit code 0 without warnings, 2 on a bad timeline or after a warning (a clip's media missing or
    unreadable, a slip that would leave the media): the other clips are still analysed, OUTPUT still written.
    """
    import opentimelineio as otio

    from .errors import LipsyncError
    from .otio_adapter.core import LipsyncAdapterError, annotate_file
    from .outputs import atomic_output

    if os.path.abspath(source) == os.path.abspath(target):
        _fail(f"{target}: the output would overwrite the input timeline; choose another -o")
    check_targets(target, json_path)
    try:
        adapter = otio.adapters.from_filepath(target).name
    except otio.exceptions.NoKnownAdapterForExtensionError:
        _fail(f"{target}: no OTIO adapter writes {os.path.splitext(target)[1] or '(no suffix)'!r} files")
    if (slip or unslip) and adapter in VIDEO_ONLY_WRITERS:  # refused before any analysis: never a silent loss
        _fail(f"{target}: {VIDEO_ONLY_WRITERS[adapter]}, so the audio clips' {'un' if unslip else ''}slip would be "
              f"lost; write .otio or FCP 7 XML (.xml), or drop --{'un' if unslip else ''}slip")
    options = {"slip": slip, "unslip": unslip, "media_root": media_root, "cache_dir": cache_dir,
               "model": model_name, "min_confidence": min_confidence, "slip_min_confidence": slip_min_confidence,
               "face_cropped": face_cropped, "handle_s": handle_s, "delay_ms": delay_ms, "quiet": quiet}
    for arg in source_args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            _fail(f"--source-arg {arg!r}: expected KEY=VALUE")
        options[f"source_{key}"] = value
    try:
        timeline, report = annotate_file(source, source_adapter, **options)  # the model loads when needed
    except LipsyncAdapterError as exc:
        _fail(str(exc))
    try:
        suffix = os.path.splitext(target)[1]
        with atomic_output(target, suffix) as tmp:
            otio.adapters.write_to_file(timeline, tmp, adapter_name=adapter)
    except LipsyncError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a writer that cannot express the timeline: one line
        _fail(f"{target}: cannot write the timeline ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})")
    if json_path:
        write_json_atomic(json_path, report.to_dict())
    click.echo(f"lipsync: annotated timeline written to {target}", err=True)
    if report.warnings:
        sys.exit(EXIT_ERROR)


# --- lipsync batch: QC over whole projects, local pool or Ray ---------------------------------------

@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("-o", "--output", "results_dir", required=True, type=click.Path(file_okay=False),
              help="RESULTS_DIR: items/<key>.json, results.jsonl, summary.csv, summary.json, report.html.")
@click.option("--include", multiple=True, metavar="GLOB", help="Folders: only files matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Folders: skip files matching GLOB (repeatable).")
@click.option("--face-cropped", is_flag=True, help="The media is already a face crop (see `check --help`).")
@click.option("--model", "model_name", metavar="NAME|PATH", default=None, help="Model name or file (default: house).")
@click.option("--standard", type=click.Choice(_standard_names()), default=None,
              help="QC verdict per file, as `lipsync check --standard`.")
@click.option("--fix", is_flag=True, help="Write a corrected copy of each out-of-sync file to RESULTS_DIR/fixed/.")
@click.option("--fix-method", type=click.Choice(["copy", "reencode"]), default="copy", show_default=True)
@click.option("--slip", is_flag=True, help="Timelines: slip paired audio clips into sync in the annotated copy.")
@click.option("--audio-stream", default=0, show_default=True, help="Index of the audio stream to analyse.")
@click.option("--channel", type=int, default=None, metavar="N", help="Analyse channel N of that stream alone.")
@PRECISION_OPTION
@DEVICE_OPTION
@click.option("--identity", type=click.Choice(["stat", "sha256"]), default="stat", show_default=True,
              help="What makes an input the same on a re-run: size + mtime, or its content hash.")
@click.option("--force", is_flag=True, help="Redo items that already have a result.")
@click.option("--workers", type=int, default=None, help="Parallel workers (default: the machine's cores).")
@click.option("--threads", type=int, default=None,
              help="Torch threads per worker (default: cores / workers; on a Ray cluster 1 per task).")
@click.option("--ray", "use_ray", is_flag=True, help="Run the items as Ray tasks on a local Ray instance.")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="Run on an existing Ray cluster (e.g. HEAD:6379 or auto); inputs and RESULTS_DIR on a shared path.")
@click.option("--report-plots", default=100, show_default=True, metavar="N",
              help="Plots embedded in report.html (the first N rows); the rest are linked.")
@click.option("--score", "score_name", type=click.Choice(_score_metric_names()), default=None,
              help="Media items: also compute this `lipsync score` metric from the same measurement (lse: LSE-D "
                   "and LSE-C; icsyncnet: probability at offset and offscreen ratio, needs a --model from "
                   "`lipsync-train fit --objective icsyncnet`). Frames are decoded directly: numbers to put beside "
                   "published LSE tables need `lipsync score --reference-decode`.")
@click.option("--filter", "filter_path", metavar="PATH", default=None,
              help="With --score icsyncnet: write the files that pass IC-SyncNet's dataset rule to PATH, one per "
                   "line (as `lipsync score --filter`).")
@click.option("--min-probability", default=0.9, show_default=True, help="--filter: least probability at offset.")
@click.option("--max-offscreen", default=0.2, show_default=True, help="--filter: largest offscreen ratio.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def batch(inputs, results_dir, include, exclude, face_cropped, model_name, standard, fix, fix_method, slip,
          audio_stream, channel, precision, device, identity, force, workers, threads, use_ray, ray_address, report_plots,
          score_name, filter_path, min_probability, max_offscreen, no_progress):
    """Check many media files and timelines; one result per item, a summary and an HTML report.

    INPUTS are media files, folders (searched recursively), timelines (.otio and anything OTIO reads:
    annotated copies go to RESULTS_DIR/timelines/) and manifests (.csv with a `path` column, or .jsonl
    objects with "path"; other columns set that item's options: face_cropped, model, standard,
    audio_stream, channel, fix, fix_method, slip, min_confidence, media_root, score).

    --score lse|icsyncnet adds `lipsync score`'s numbers for every media file, computed from the same
    measurement (no second pass): per file and per face track in items/<key>.json, one column per value
    in summary.csv, the means over files in summary.json and report.html. The metric is part of each
    item's key. A model the metric cannot use (icsyncnet with a distance-only model, such as the house
    model) is refused in one line before any item runs.

    Re-running the same command skips every item whose result exists for the same input (size + mtime, or
    --identity sha256), model and options; a killed batch resumes where it stopped. A bad item (corrupt,
    no audio, no face) is recorded with its error and the batch goes on.

    \b
    Examples:
      lipsync batch /projects/ep101 -o qc/ep101 --standard ebu-r37
      lipsync batch dailies/ --include '*.mov' --exclude 'proxy/*' -o qc/dailies --workers 4
      lipsync batch edit.otio reels.csv -o qc/edit --face-cropped
      lipsync batch /mnt/archive -o /mnt/qc/archive --ray-address HEAD:6379
      lipsync batch generated/ -o qc/lse --face-cropped --model syncnet_v2 --score lse
      lipsync batch footage/ -o qc/ic --score icsyncnet --model ic.model --filter keep.txt
    Exit code 0 when every item was measured (and passed the --standard), 1 when a measured item is out of
    tolerance, 2 when any item failed.
    """
    from .batch import ScoreFilter, run_batch
    from .metrics import get_metric, summary_line

    if use_ray and ray_address:
        _fail("--ray starts a local Ray; --ray-address joins a cluster: choose one")
    if (workers is not None and workers < 1) or (threads is not None and threads < 1):
        _fail("--workers and --threads must be at least 1")
    from .errors import LipsyncError
    from .pipeline import resolve_device

    try:  # once, here: not as the same error in every item
        device = resolve_device(device)
    except LipsyncError as exc:
        _fail(str(exc))
    options = {"face_cropped": face_cropped, "model": model_name, "standard": standard, "fix": fix,
               "fix_method": fix_method, "slip": slip, "audio_stream": audio_stream, "channel": channel,
               "precision": precision, "score": score_name, "device": device}
    score_filter = ScoreFilter(filter_path, min_probability, max_offscreen) if filter_path else None
    try:
        os.makedirs(results_dir, exist_ok=True)
        summary = run_batch(inputs, results_dir, options=options, include=include, exclude=exclude,
                            identity=identity, force=force, workers=workers, threads=threads, ray=use_ray, ray_address=ray_address,
                            plots=report_plots, progress=not no_progress, score_filter=score_filter)
    except LipsyncError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{results_dir}: {exc.strerror or exc}")
    click.echo(f"lipsync batch: {summary['items']} item(s): {summary['failed']} failed, "
               f"{summary['out_of_tolerance']} out of tolerance"
               + (f", {summary['no_sync']} no sync" if summary.get("no_sync") else "")
               + f" -> {os.path.join(results_dir, 'report.html')}", err=True)
    for name, scores in summary.get("scores", {}).items():
        click.echo(f"lipsync batch: {summary_line(get_metric(name), scores)}", err=True)
    if score_filter:
        kept = summary["filter"]["kept"]
        click.echo(f"lipsync batch: {kept} file(s) pass (probability at offset >= {min_probability}, "
                   f"offscreen ratio <= {max_offscreen}): {filter_path}", err=True)
    if summary["failed"]:
        sys.exit(EXIT_ERROR)
    if summary["out_of_tolerance"] or (standard and summary.get("no_sync")):  # no_sync fails a standard too
        sys.exit(EXIT_FAIL)
