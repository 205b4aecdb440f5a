"""`lipsync-train`: prepare shards -> fit -> eval -> export, the self-supervised SyncNet pipeline."""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from .. import __version__
from ..errors import LipsyncError
from ..model.weights import BadWeights

# a model or checkpoint file that cannot be used (missing, empty, damaged, wrong shapes, holding code): one line
BAD_INPUT = (LipsyncError, BadWeights)


def _fail(message: str) -> None:
    click.echo(f"lipsync-train: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lipsync-train")
def main():
    """Train SyncNet-family models on your own synced footage (self-supervised: the footage's own
    sound is the genuine pair, the same sound shifted in time the false one; no labels needed).

    \b
      lipsync-train prepare ../shared/data/clips -o data/house      # face tracks -> shards
      lipsync-train fit data/house -o runs/house --val-persons a,b   # checkpoints, log.csv, --resume
      lipsync-train eval runs/house/checkpoint.pt data/house         # accuracy table (markdown + JSON)
      lipsync-train export runs/house/checkpoint.pt -o house.model   # what `lipsync check --model` reads
    """


@main.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--output", "dataset", required=True, help="Dataset folder (created; re-running appends and skips sources already done).")
@click.option("--person", default=None, help="Person label for every source (default: the catalog's speaker_hint, else the folder name). Validation splits by person.")
@click.option("--groups", default="synced", show_default=True, help="Catalog groups to use (comma list; '' = all). Generated and mismatched clips are never training positives.")
@click.option("--detect-every", default=2, show_default=True, help="Run the face detector on every n-th frame (tracking fills in).")
@click.option("--detector", default="blazeface", show_default=True, type=click.Choice(["blazeface", "s3fd"]))
@click.option("--faces", is_flag=True, help="Also store the 224x224 face crops (JPEG, ~10 kB a frame) that the original "
              "architecture trains on (fit --arch syncnet). The compact model needs only the mouths.")
def prepare(sources, dataset, person, groups, detect_every, detector, faces):
    """Footage folders, files or .txt lists -> face tracks -> compact shards (grey lower faces + 16 kHz
    audio, and with --faces the face crops), resumable. A file that cannot be used is reported in one line
    and skipped."""
    from ..footage import FootageOptions
    from .data import prepare as run_prepare

    group_set = {g for g in groups.split(",") if g} if groups else set()
    options = FootageOptions(detect_every=detect_every, detector=detector)
    try:
        index = run_prepare(list(sources), dataset, person=person, groups=group_set, options=options,
                            report=lambda m: tqdm.write(m, file=sys.stderr),
                            progress=lambda it: tqdm(it, desc="prepare", unit="file", file=sys.stderr),
                            faces=faces)
    except LipsyncError as exc:
        _fail(str(exc))
    tracks = sum(len(s["tracks"]) for s in index["shards"])
    frames = sum(s["frames"] for s in index["shards"])
    persons = len({t["person"] for s in index["shards"] for t in s["tracks"]})
    click.echo(f"{dataset}: {tracks} tracks, {frames} frames ({frames / 25 / 60:.1f} min), {persons} persons; "
               f"{len(index['failed'])} sources failed")


@main.command()
@click.argument("dataset")
@click.option("-o", "--output", "out", required=True, help="New dataset folder: links to DATASET's shards plus lips_NNNN.npz (face-mesh landmarks).")
@click.option("--detect-every", default=2, show_default=True, help="As the dataset was prepared with (the crops must come out the same).")
@click.option("--detector", default="blazeface", show_default=True, type=click.Choice(["blazeface", "s3fd"]))
@click.option("--base", default=".", show_default=True, help="Folder the index's relative source paths are relative to (where prepare ran).")
@click.option("--threads", default=1, show_default=True)
def landmarks(dataset, out, detect_every, detector, base, threads):
    """Face-mesh landmarks for every frame of a prepared dataset (for fit --arch lips): each source is
    scanned again with the same options, its crops checked against the stored mouths."""
    import json

    import torch

    from ..footage import FootageOptions
    from .landmarks import add_landmarks

    torch.set_num_threads(threads)
    summary = add_landmarks(dataset, out, FootageOptions(detect_every=detect_every, detector=detector), base=base,
                            report=lambda m: tqdm.write(m, file=sys.stderr), threads=threads)
    click.echo(json.dumps(summary, indent=1))


@main.command()
@click.argument("datasets", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, help="Run folder: checkpoint.pt, log.csv, summary.json.")
@click.option("--arch", type=click.Choice(["compact", "syncnet", "lips"]), default="compact", show_default=True,
              help="compact: the CPU model (grey lower face 48x80; the house model's). syncnet: the original network "
                   "(224x224 face crops, 13.6 M parameters, state dict as syncnet_v2's; ~25x slower to train; needs "
                   "a dataset prepared with --faces). lips: face-mesh lip geometry (a dataset with `landmarks`).")
@click.option("--objective", type=click.Choice(["multiway", "contrastive", "icsyncnet"]), default="multiway", show_default=True,
              help="multiway: softmax over candidate offsets (Perfect match); contrastive: the paper's margin loss; "
                   "icsyncnet: cosine x learnable temperature, balanced BCE, 0.4 s log-mel audio.")
@click.option("--steps", default=3000, show_default=True)
@click.option("--segments", default=6, show_default=True, help="32-window segments per batch (each from one track).")
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--margin", default=2.0, show_default=True, help="Contrastive margin.")
@click.option("--val-persons", default="", help="Comma list of persons kept for validation (default: 15%% of the persons, by hash).")
@click.option("--refine-at", default=0.75, show_default=True, help="Fraction of the steps after which refinement drops genuine windows the model calls out of sync (0: never).")
@click.option("--checkpoint-every", default=100, show_default=True)
@click.option("--eval-every", default=500, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N|auto",
              help="Train on the GPU with cuda (bfloat16 autocast, AMP); auto: cuda when there is one. "
                   "Checkpoints load on either, so a run may move between machines with --resume.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/checkpoint.pt (options come from the checkpoint; --steps may extend).")
@click.option("--pooled", is_flag=True, help="Average the lip feature map over space (fewer weights; generalises better on few people).")
@click.option("--dropout", default=0.0, show_default=True, help="Dropout on both heads' inputs while training.")
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--augment", type=click.Choice(["basic", "geometric"]), default="geometric", show_default=True,
              help="Lip augmentation per segment. basic: mirror, +-3 px shift, contrast/brightness (the first house "
                   "model's); geometric adds zoom 0.85-1.15, rotation +-6 degrees and low-resolution blur.")
@click.option("--stop-after", type=int, default=None, help="End this invocation at this step (checkpointed); continue later with --resume.")
@click.option("--init", "init", default=None, metavar="MODEL_OR_CHECKPOINT",
              help="Start from these weights (a .model file or a .pt checkpoint of the same architecture and size), "
                   "e.g. to continue the house model on more people.")
@click.option("--hidden", default=512, show_default=True, help="--arch lips: width of the lip MLP's first layer.")
@click.option("--init-audio", default=None, metavar="MODEL_OR_CHECKPOINT",
              help="--arch lips: start the audio stream from this model's (e.g. model/weights/house.model).")
def fit(datasets, out, arch, objective, steps, segments, lr, margin, val_persons, refine_at, checkpoint_every, eval_every,
        seed, threads, device, resume, pooled, dropout, weight_decay, augment, stop_after, init, hidden, init_audio):
    """Train a sync network on prepared datasets, persons split for validation, on CPU or GPU."""
    from .fit import FitOptions
    from .fit import fit as run_fit

    options = FitOptions(arch=arch, objective=objective, steps=steps, segments=segments, lr=lr, margin=margin, seed=seed,
                         val_persons=[p for p in val_persons.split(",") if p], refine_at=refine_at,
                         checkpoint_every=checkpoint_every, eval_every=eval_every, threads=threads, device=device,
                         stop_after=stop_after, pooled=pooled, dropout=dropout, weight_decay=weight_decay,
                         augment=augment, init=init, hidden=hidden, init_audio=init_audio)
    try:
        run_fit(list(datasets), out, options, resume=resume, report=lambda m: tqdm.write(m, file=sys.stderr),
                progress=lambda **kw: tqdm(desc="fit", unit="step", file=sys.stderr, **kw))
    except (*BAD_INPUT, ValueError) as exc:
        _fail(str(exc))


@main.command("fit-lips")
@click.argument("datasets", nargs=-1, required=True)
@click.option("-o", "--output", "out", required=True, help="Run folder: curve.csv, step_NNNNNN.pt, best.pt, checkpoint.pt.")
@click.option("--steps", default=3000, show_default=True)
@click.option("--segments", default=6, show_default=True)
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--weight-decay", default=1e-3, show_default=True)
@click.option("--dropout", default=0.2, show_default=True)
@click.option("--hidden", default=512, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--val-persons", default="")
@click.option("--eval-every", default=250, show_default=True)
@click.option("--init-audio", default=None, metavar="MODEL_OR_CHECKPOINT")
@click.option("--freeze-audio-tower", is_flag=True, help="Freeze the --init-audio tower and cache its outputs (fast).")
@click.option("--freeze-audio-head", is_flag=True, help="With --freeze-audio-tower: the audio head fixed too (only the lips learn).")
@click.option("--no-augment", is_flag=True)
@click.option("--centre", default="none", show_default=True, metavar="none|track|localN",
              help="track: subtract each track's median lip shape; localN: the median of the frames within +-N (streamable)")
@click.option("--inputs", type=click.Choice(["points", "shape", "both"]), default="points", show_default=True,
              help="Lip stream input: the 47 normalised points, 14 mouth measures, or both.")
@click.option("--context", default=0, show_default=True, help="Lip frames each side of the 5-frame window (audio stays 0.2 s).")
@click.option("--threads", type=int, default=1, show_default=True)
def fit_lips_cmd(datasets, out, steps, segments, lr, weight_decay, dropout, hidden, seed, val_persons, eval_every,
                 init_audio, freeze_audio_tower, freeze_audio_head, no_augment, centre, inputs, context, threads):
    """Train the lips architecture (face-mesh lip geometry) fast; see train/lipsfit.py."""
    from .lipsfit import LipsFitOptions, fit_lips

    options = LipsFitOptions(steps=steps, segments=segments, lr=lr, weight_decay=weight_decay, dropout=dropout,
                             hidden=hidden, seed=seed, val_persons=[p for p in val_persons.split(",") if p],
                             eval_every=eval_every, init_audio=init_audio, freeze_audio_tower=freeze_audio_tower,
                             freeze_audio_head=freeze_audio_head,
                             threads=threads, augment=not no_augment, centre=centre, inputs=inputs, context=context)
    try:
        fit_lips(list(datasets), out, options, report=lambda m: click.echo(m, err=True))
    except (*BAD_INPUT, ValueError) as exc:
        _fail(str(exc))


def _eval_tracks(model_path: str, datasets, persons: str, loaded_datasets: dict | None = None):
    """(net, config, tracks to evaluate, checkpoint state or None) for a checkpoint or an exported model.
    `loaded_datasets` (dataset -> its tracks) keeps datasets read once when several models are evaluated."""
    from ..model import load_model
    from .data import load_tracks
    from .export import load_checkpoint
    from .nets import arch_of, check_tracks, feature_config
    from .pairs import featurize

    state = None
    if model_path.endswith(".pt"):
        net, state = load_checkpoint(model_path)
        chosen = {p for p in persons.split(",") if p} or set(state.get("val_persons", []))
        datasets = datasets or state.get("datasets", [])
    else:
        loaded = load_model(model_path)
        net = loaded.net
        chosen = {p for p in persons.split(",") if p} or set(loaded.metadata.get("validation", {}).get("persons", []))
    if not chosen:
        raise LipsyncError(model_path, "no validation persons recorded: give --persons")
    cfg = feature_config(net)
    loaded_datasets = {} if loaded_datasets is None else loaded_datasets
    for d in datasets:
        if d not in loaded_datasets:
            loaded_datasets[d] = load_tracks(d)
    tracks = featurize([t for d in datasets for t in loaded_datasets[d] if t.person in chosen],
                       cfg["audio_feature"], cfg["audio_columns"])
    if not tracks:
        raise LipsyncError(model_path, f"no tracks of {', '.join(sorted(chosen))} in {', '.join(datasets)}")
    try:
        check_tracks(arch_of(net), tracks, datasets)
    except ValueError as exc:
        raise LipsyncError(model_path, str(exc)) from None
    return net.eval(), cfg, tracks, state


@main.command("eval")
@click.argument("model_path", metavar="CHECKPOINT_OR_MODEL")
@click.argument("datasets", nargs=-1)
@click.option("--persons", default="", help="Comma list of persons to evaluate on (default: the run's validation persons).")
@click.option("-o", "--output", "out", default=None, help="Write OUT.md and OUT.json (default: beside the checkpoint, eval.md/.json).")
@click.option("--compare", "others", multiple=True, metavar="CHECKPOINT_OR_MODEL",
              help="Evaluate this one too, on the same persons and datasets: one table, a row per model (repeatable).")
def eval_cmd(model_path, datasets, persons, out, others):
    """The accuracy table on validation speakers: offset within +-1 frame of the truth with 1, 5, 11, 15
    windows of context (+-15 frame search), and clip accuracy with applied shifts of +-40/120/200 ms.

    \b
      lipsync-train eval runs/orig/best.pt --compare runs/house/best.pt --compare house.model
    """
    import json
    from pathlib import Path

    from .evaluate import evaluate, markdown_table

    def label(path: str) -> str:  # checkpoints are all called checkpoint.pt / best.pt: name the run too
        p = Path(path)
        return f"{p.parent.name}/{p.name}" if p.suffix == ".pt" else p.name

    rows, datasets_read = {}, {}
    try:
        net, cfg, tracks, state = _eval_tracks(model_path, list(datasets), persons, datasets_read)
        # the compared models see the same persons and datasets as the first one
        persons = persons or ",".join(sorted({t.person for t in tracks}))
        datasets = list(datasets) or (state or {}).get("datasets", [])
        result = evaluate(net, tracks, cfg["audio_columns"])
        result["model"] = model_path
        rows[label(model_path)] = result
        for other in others:
            o_net, o_cfg, o_tracks, _ = _eval_tracks(other, datasets, persons, datasets_read)
            rows[label(other)] = {**evaluate(o_net, o_tracks, o_cfg["audio_columns"]), "model": other}
    except BAD_INPUT as exc:
        _fail(str(exc))
    if others:
        result["compared"] = {k: v for k, v in rows.items() if v is not result}
    table = markdown_table(rows)
    base = Path(out) if out else Path(model_path).with_name("eval")
    base.with_suffix(".json").write_text(json.dumps(result, indent=1))
    base.with_suffix(".md").write_text(table + "\n")
    click.echo(table)
    click.echo(f"written {base.with_suffix('.md')} and {base.with_suffix('.json')}", err=True)


@main.command()
@click.argument("checkpoint")
@click.option("-o", "--output", "target", required=True, help="Model file to write (e.g. house.model); `lipsync check --model PATH` reads it.")
@click.option("--name", default=None, help="Model name shown by `lipsync models` (default: the file stem).")
@click.option("--description", default="", help="One line for `lipsync models`.")
@click.option("--datasets", "datasets", multiple=True, help="Datasets for calibration and the validation numbers (default: the run's).")
def export(checkpoint, target, name, description, datasets):
    """Checkpoint -> model file with its input spec, training summary, validation accuracy and a confidence
    scale calibrated on the validation speakers' synced tracks."""
    from pathlib import Path

    from ..model import load_model
    from .evaluate import evaluate
    from .export import calibrate
    from .export import export as run_export

    try:
        net, cfg, tracks, state = _eval_tracks(checkpoint, list(datasets), "")
    except BAD_INPUT as exc:
        _fail(str(exc))
    if state is None:
        _fail(f"{checkpoint}: not a lipsync-train checkpoint (.pt from `lipsync-train fit`); export reads those")
    scale = calibrate(net, tracks, cfg["audio_columns"])
    val = evaluate(net, tracks, cfg["audio_columns"])
    val = {k: v for k, v in val.items() if k != "tracks"}
    run_export(net, state, target, name or Path(target).stem, scale, val, description)
    loaded = load_model(target)
    click.echo(f"{target}: {loaded.name} ({loaded.architecture}), sha256 {loaded.sha256}; validation offset accuracy "
               f"{val['window_accuracy']} (context in windows), clip accuracy {val['clip_accuracy']}")


@main.command("calibrate")
@click.argument("sources", nargs=-1, required=True)
@click.option("--model", "model_name", default=None, help="Model name or file (default: the packaged default model).")
@click.option("--persons", default="", help="Comma list of persons (catalog speaker_hint) to calibrate on: people the "
              "model never trained on (default: the model's validation persons).")
@click.option("--vshift", type=int, default=None, help="Search half-width in frames it is fitted at (default: the "
              "model's default search, e.g. 25 for compact models); searches up to this width use it.")
@click.option("-o", "--output", "target", default=None,
              help="Calibration file (default: beside the model file, <model>.calibration.json, where `lipsync` finds it).")
@click.option("--cache", "cache_dir", default=".lipsync-calibration-cache", show_default=True,
              help="Folder for each clip's embeddings (re-fitting after a change then takes seconds).")
@click.option("-f", "--force", is_flag=True, help="Replace an existing calibration file.")
def calibrate_cmd(sources, model_name, persons, vshift, target, cache_dir, force):
    """Fit `sync_probability` and the `no_sync` threshold of a model on synced footage of people it never
    trained on: each clip as it is, with its audio moved, and with other persons' audio (mismatched).
    Run it again whenever the default model changes.

    \b
      lipsync-train calibrate ../shared/data/clips --persons a,b,c   # -> model/weights/house.calibration.json
    """
    import shlex
    from pathlib import Path

    from ..model import registry
    from ..sync import SyncEngine
    from ..verdict import calibration_path
    from .calibrate import calibrate
    from .data import find_sources

    try:
        model = registry.load(model_name)
    except Exception as exc:  # ModelNotFound / BadWeights: one line
        _fail(str(exc))
    chosen = {p for p in persons.split(",") if p} or set(model.metadata.get("validation", {}).get("persons", []))
    if not chosen:
        _fail(f"model {model.name} records no validation persons: give --persons")
    sources_found = [(s.path, s.person) for s in find_sources(list(sources)) if s.person in chosen]
    missing = chosen - {p for _, p in sources_found}
    if missing:
        _fail(f"no synced clips of {', '.join(sorted(missing))} in {', '.join(sources)}")
    target = Path(target) if target else calibration_path(model.path)
    if target.exists() and not force:
        _fail(f"{target} exists: -f/--force replaces it")
    command = "lipsync-train calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    cal = calibrate(sources_found, model, vshift or SyncEngine(model).vshift, Path(cache_dir),
                    report=lambda m: tqdm.write(m, file=sys.stderr),
                    progress=lambda it: tqdm(it, desc="calibrate", unit="clip", file=sys.stderr), command=command)
    cal.save(target)
    held = cal.fitted_on["held_out"]
    click.echo(f"{target}: {len(chosen)} persons, {cal.fitted_on['clips']} clips, examples {cal.fitted_on['examples']}; "
               f"no_sync below p={cal.no_sync_below}; held-out persons: synced/shifted kept "
               f"{held['synced_or_shifted_kept']:.1%}, mismatched refused {held['mismatched_refused']:.1%}")
    for row in cal.reliability:
        click.echo(f"  predicted {row['predicted']}: {row['examples']} examples, observed {row['observed']:.2f}")
