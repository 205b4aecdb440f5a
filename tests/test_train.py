"""lipsync-train: pair sampling, objectives, refinement, and the whole prepare -> fit -> eval -> export ->
check path on real clips from ../shared."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from otio_lipsync.model.compact import CompactSyncNet
from otio_lipsync.train.cli import main as train_cli
from otio_lipsync.train.data import FaceJpegs
from otio_lipsync.train.evaluate import refine_mask
from otio_lipsync.train.objectives import pair_loss
from otio_lipsync.train.pairs import FeatureTrack, PairSampler

from otio_lipsync.cli import main as lipsync

from .conftest import CLIPS, clip, run_ffmpeg

TINY_CLIPS = ["synced_lrs2_demo00001_01.mp4", "synced_voxceleb2_id00067_01.mp4", "synced_lrs2_demo00004_01.mp4"]


def synthetic_track(n_windows: int, person: str = "p", columns: int = 20) -> FeatureTrack:
    g = torch.Generator().manual_seed(n_windows)
    mouths = torch.randint(0, 255, (n_windows + 4, 48, 80), dtype=torch.uint8, generator=g)
    features = torch.randn(13, 4 * (n_windows - 1) + columns, generator=g)
    return FeatureTrack(person, f"{person}.mp4", mouths, features, n_windows, torch.ones(n_windows, dtype=torch.bool))


def test_sampler_false_pairs_are_never_shift_zero_and_cover_two_seconds():
    sampler = PairSampler([synthetic_track(400), synthetic_track(150, "q")], columns=20, seed=1)
    shifts, genuine = [], []
    for _ in range(60):
        b = sampler.sample(4)
        shifts.append(b.shift.numpy())
        genuine.append(b.genuine.numpy())
        assert len(b.lips) == b.lip_index.max() + 1 and b.audio_index.max() < len(b.audio)
    shifts, genuine = np.concatenate(shifts), np.concatenate(genuine)
    assert np.all(shifts[genuine] == 0)
    false = shifts[~genuine]
    assert np.all(np.abs(false) >= 2)  # never 0, and never the ambiguous one-frame neighbour
    assert false.min() <= -48 and false.max() >= 48  # the paper's +-2 s at 25 fps
    # every part of the range is drawn, near shifts (hard negatives) most
    edges = np.array([2, 10, 20, 30, 40, 51])
    density = np.histogram(np.abs(false), bins=edges)[0] / np.diff(edges)  # pairs per shift value
    assert np.all(density > 0) and density[0] == density.max()


def test_geometric_augmentation_moves_the_face_not_the_time():
    """One transform per segment: every frame changes, the 5-frame windows stay aligned with their audio
    (the batch's pair indices and shifts equal those of the same draw without augmentation)."""
    track = synthetic_track(120)
    track.mouths = torch.linspace(0, 255, 80).repeat(124, 48, 1).to(torch.uint8)  # a smooth ramp: resampling shows
    plain = PairSampler([track], columns=20, seed=3).sample(1, augment=False)  # one segment: same draw
    moved = PairSampler([track], columns=20, seed=3, augment="geometric").sample(1)
    assert moved.lips.shape == plain.lips.shape and moved.lips.dtype == torch.uint8
    assert torch.equal(moved.shift, plain.shift) and torch.equal(moved.lip_index, plain.lip_index)
    assert not torch.equal(moved.lips, plain.lips)
    # the windows are still stacks of consecutive frames: window i's frame 1 is window i+1's frame 0
    assert torch.equal(moved.lips[0, 1], moved.lips[1, 0])
    with pytest.raises(ValueError, match="unknown augmentation"):
        PairSampler([track], columns=20, augment="sepia")


def _face_crops(n: int) -> np.ndarray:
    """n synthetic 224x224 BGR 'faces': a smooth ramp, a blue patch, a dark mouth that opens and closes."""
    crops = np.zeros((n, 224, 224, 3), np.uint8)
    crops[..., 1] = np.linspace(40, 200, 224, dtype=np.uint8)[None, None, :]
    crops[:, 30:90, 40:100, 0] = 230  # blue in BGR order: must stay in channel 0
    for i in range(n):
        h = 4 + 3 * (i % 6)
        crops[i, 150 - h:150 + h, 80:144] = 20
    return crops


def test_face_crops_round_trip_through_jpeg():
    crops = _face_crops(12)
    jpegs = FaceJpegs.encode(crops)
    assert len(jpegs) == 12 and len(jpegs.buffer) < 12 * 224 * 224 * 3 / 10  # JPEG, not raw crops
    back = jpegs.decode(0, 12)
    assert back.shape == crops.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - crops).mean() < 3  # quality 90
    assert back[:, 60, 70, 0].min() > 200 and back[:, 60, 70, 2].max() < 40  # BGR kept, not swapped
    joined = FaceJpegs.concat([jpegs.slice(0, 5), jpegs.slice(5, 12)])
    assert np.array_equal(joined.decode(3, 9), back[3:9])


@pytest.mark.parametrize("augment", ["basic", "geometric"])
def test_face_crop_segments_for_the_original_architecture(augment):
    """With faces the sampler hands the network runs of consecutive 224x224 crops (windows are cut inside
    SyncNet.forward_lip_sequence); augmentation changes the pixels, never the pairs."""
    track = synthetic_track(60)
    track.faces = FaceJpegs.encode(_face_crops(64))
    plain = PairSampler([track], columns=20, seed=5, faces=True).sample(1, augment=False)
    moved = PairSampler([track], columns=20, seed=5, faces=True, augment=augment).sample(1)
    assert plain.lips.shape == (36, 224, 224, 3) and plain.lip_runs.tolist() == [36]
    assert plain.num_lip_windows == 32 == int(plain.lip_index.max()) + 1
    assert torch.equal(moved.shift, plain.shift) and torch.equal(moved.lip_index, plain.lip_index)
    assert moved.lips.shape == plain.lips.shape and not torch.equal(moved.lips, plain.lips)
    decoded = track.faces.decode(0, 64)
    assert any(np.array_equal(plain.lips.numpy(), decoded[s:s + 36]) for s in range(29))  # consecutive frames


def test_refinement_drops_windows_clearly_off_sync_and_keeps_silence():
    vshift, n = 15, 60
    rng = np.random.default_rng(0)
    d = 10 + 0.05 * rng.standard_normal((n, 2 * vshift + 1))
    d[:20, vshift] -= 3  # in sync: minimum at lag 0
    d[20:40, vshift + 7] -= 3  # dubbed / off-screen speech: the model clearly prefers lag +7
    # 40..60: flat distances, no preference (silence): must stay
    keep = refine_mask(d, context=5, vshift=vshift)
    assert keep[:18].all() and not keep[22:38].any() and keep[42:].all()


@pytest.mark.parametrize("objective", ["multiway", "contrastive", "icsyncnet"])
def test_loss_decreases_on_a_fixed_tiny_batch(objective):
    torch.manual_seed(0)
    columns = 40 if objective == "icsyncnet" else 20
    cfg = {"audio_feature": "logmel26", "audio_columns": 40, "normalize": True} if objective == "icsyncnet" else {}
    track = synthetic_track(80, columns=columns)
    if objective == "icsyncnet":
        track.features = torch.randn(26, 4 * 79 + 40)
    batch = PairSampler([track], columns=columns, seg_len=16, seed=0).sample(2, augment=False)
    net = CompactSyncNet(**cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = pair_loss(objective, net, net.forward_lip_windows(batch.lips), net.forward_aud(batch.audio), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::8]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    for name in TINY_CLIPS:
        clip(name)
    out = tmp_path_factory.mktemp("dataset") / "tiny"
    result = CliRunner().invoke(train_cli, ["prepare", *[str(CLIPS / n) for n in TINY_CLIPS],
                                            str(CLIPS / "no_such_clip.mp4"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_prepare_writes_shards_and_reports_bad_sources(tiny_dataset):
    out, result = tiny_dataset
    index = json.loads((out / "index.json").read_text())
    tracks = [t for s in index["shards"] for t in s["tracks"]]
    assert {t["person"] for t in tracks} == {"lrs2_demo00001", "voxceleb2_id00067", "lrs2_demo00004"}
    assert all(t["frames"] > 100 for t in tracks)
    assert any("no_such_clip.mp4" in k for k in index["failed"])
    assert "no_such_clip.mp4" in result.output  # one line naming the bad file
    with np.load(out / index["shards"][0]["file"]) as z:
        assert z["mouths"].shape[1:] == (48, 80) and z["mouths"].dtype == np.uint8
        assert len(z["audio"]) == 640 * len(z["mouths"])
    again = CliRunner().invoke(train_cli, ["prepare", *[str(CLIPS / n) for n in TINY_CLIPS], "-o", str(out)])
    assert again.exit_code == 0 and "3 sources already in" in again.output  # resumable: nothing done twice
    assert json.loads((out / "index.json").read_text())["shards"] == index["shards"]


def _fit(dataset, run, steps, *extra):
    return CliRunner().invoke(train_cli, ["fit", str(dataset), "-o", str(run), "--steps", str(steps),
                                          "--segments", "2", "--checkpoint-every", "3", "--eval-every", "3",
                                          "--val-persons", "lrs2_demo00004", "--threads", "1", *extra])


def test_fit_is_deterministic_and_resumes(tiny_dataset, tmp_path):
    dataset, _ = tiny_dataset
    a, b = _fit(dataset, tmp_path / "a", 6), _fit(dataset, tmp_path / "b", 6, "--stop-after", "3")
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    with open(tmp_path / "b" / "log.csv", "a") as f:  # a row logged by a run killed before its checkpoint
        f.write("4,9.9,0,0,0,0,,\n")
    (tmp_path / "b" / ".lipsync-123-abc.pt").write_bytes(b"half a checkpoint")
    b2 = _fit(dataset, tmp_path / "b", 6, "--resume")
    assert b2.exit_code == 0 and "resuming" in b2.output, b2.output
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "same seed, interrupted and resumed: same weights"
    with open(tmp_path / "b" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["3", "6"]  # the killed run's row is redone, not duplicated
    assert not list((tmp_path / "b").glob(".lipsync-*"))
    assert float(rows[-1]["data_share"]) < 0.5 and float(rows[-1]["lip_windows_per_s"]) > 0


def test_fit_starts_from_the_weights_given_with_init(tiny_dataset, tmp_path):
    """--init warm-starts from a model file or checkpoint (how a newer default continued the house model);
    a network of another shape is one clear line."""
    dataset, _ = tiny_dataset
    assert _fit(dataset, tmp_path / "a", 3).exit_code == 0
    start = tmp_path / "a" / "checkpoint.pt"
    zero = _fit(dataset, tmp_path / "b", 3, "--init", str(start), "--lr", "0")  # no updates: the weights stay
    assert zero.exit_code == 0 and "starting from the weights of" in zero.output, zero.output
    wa = torch.load(start, weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    learned = [k for k in wa if k.endswith(("weight", "bias"))]  # BatchNorm's running statistics move anyway
    assert learned and all(torch.equal(wa[k], wb[k]) for k in learned)
    other = _fit(dataset, tmp_path / "c", 3, "--init", str(start), "--pooled")
    assert other.exit_code != 0 and "does not match" in other.output.strip().splitlines()[-1], other.output


def test_fit_logs_to_tensorboard_when_it_is_installed(tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: fit then logs to log.csv only")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dataset, _ = tiny_dataset
    assert _fit(dataset, tmp_path / "tb", 3).exit_code == 0
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    assert {"loss", "val_acc5", "data_share"} <= set(events.Tags()["scalars"])
    with open(tmp_path / "tb" / "log.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert events.Scalars("loss")[-1].value == pytest.approx(float(row["loss"]), rel=1e-6)


def test_prepare_fit_eval_export_then_check_with_the_exported_model(tiny_dataset, tmp_path, monkeypatch):
    dataset, _ = tiny_dataset
    run = tmp_path / "run"
    assert _fit(dataset, run, 6).exit_code == 0
    ev = CliRunner().invoke(train_cli, ["eval", str(run / "checkpoint.pt"), str(dataset)])
    assert ev.exit_code == 0, ev.output
    assert "| 5 windows |" in (run / "eval.md").read_text()
    report = json.loads((run / "eval.json").read_text())
    assert report["window_counts"]["5"] > 0 and report["clip_count"] == 6  # one held-out track x 6 shifts
    model = tmp_path / "models" / "tiny_house.model"
    ex = CliRunner().invoke(train_cli, ["export", str(run / "checkpoint.pt"), "-o", str(model)])
    assert ex.exit_code == 0, ex.output
    from otio_lipsync.model import load_model

    loaded = load_model(model)
    assert loaded.architecture == "compact" and loaded.metadata["validation"]["persons"] == ["lrs2_demo00004"]
    # side by side in one table: the exported model only rescales distances, so every accuracy is the same
    both = CliRunner().invoke(train_cli, ["eval", str(run / "checkpoint.pt"), "--compare", str(model),
                                          "-o", str(tmp_path / "both")])
    assert both.exit_code == 0, both.output
    rows = [line for line in (tmp_path / "both.md").read_text().splitlines() if line.startswith("| run/") or
            line.startswith("| tiny_house")]
    assert len(rows) == 2 and rows[0].split("|")[2:] == rows[1].split("|")[2:], rows
    compared = json.loads((tmp_path / "both.json").read_text())["compared"]["tiny_house.model"]
    assert compared["window_accuracy"] == report["window_accuracy"]
    assert loaded.metadata["training"]["steps"] == 6 and loaded.input_spec["audio"]["feature"] == "mfcc13"
    monkeypatch.setenv("OTIO_LIPSYNC_MODEL_DIR", str(model.parent))
    listed = CliRunner().invoke(lipsync, ["models", "--json"])
    assert "tiny_house" in listed.output
    check = CliRunner().invoke(lipsync, ["check", "--face-cropped", "--model", "tiny_house", "--json", "-",
                                         str(clip("synced_lrs2_demo00004_01.mp4"))])
    assert check.exit_code == 0, check.output
    result = json.loads(check.stdout)[0]
    assert result["model"]["architecture"] == "compact" and result["num_windows"] > 100


FACES_SECONDS = 3  # of each clip: the original network's lip tower (224 px) is what the faces tests pay for


@pytest.fixture(scope="module")
def tiny_faces_dataset(tmp_path_factory, ffmpeg_exe):
    """The first 3 s of two LRS2 clips, each in a folder named after its person (prepare's label for a file
    outside the catalog), prepared with --faces."""
    root = tmp_path_factory.mktemp("faces")
    sources = []
    for person in ("lrs2_demo00001", "lrs2_demo00004"):
        (root / person).mkdir()
        sources.append(root / person / f"synced_{person}_01.mp4")
        run_ffmpeg(ffmpeg_exe, "-i", str(clip(f"synced_{person}_01.mp4")), "-t", str(FACES_SECONDS), "-c", "copy",
                   str(sources[-1]))
    out = root / "tiny"
    result = CliRunner().invoke(train_cli, ["prepare", "--faces", *map(str, sources), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, sources


def test_original_architecture_trains_exports_and_checks(tiny_faces_dataset, tmp_path):
    """--arch syncnet: the same pipeline trains the original network on the face crops; the exported file
    is a syncnet-architecture model (syncnet_v2's state-dict layout) whose distances are the checkpoint's
    times the calibrated scale, and `lipsync check --model` runs it."""
    tiny_faces_dataset, sources = tiny_faces_dataset
    index = json.loads((tiny_faces_dataset / "index.json").read_text())
    assert {t["person"] for s in index["shards"] for t in s["tracks"]} == {"lrs2_demo00001", "lrs2_demo00004"}
    assert index["faces"] is True
    with np.load(tiny_faces_dataset / index["shards"][0]["file"]) as z:
        assert len(z["face_offsets"]) == len(z["mouths"]) + 1
    run = tmp_path / "orig"
    fit = CliRunner().invoke(train_cli, ["fit", str(tiny_faces_dataset), "-o", str(run), "--arch", "syncnet",
                                         "--steps", "2", "--segments", "1", "--checkpoint-every", "2", "--eval-every",
                                         "2", "--refine-at", "0", "--val-persons", "lrs2_demo00004", "--threads", "1"])
    assert fit.exit_code == 0, fit.output
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert rows[-1]["step"] == "2" and np.isfinite(float(rows[-1]["loss"])) and rows[-1]["val_acc5"] != ""
    model = tmp_path / "orig.model"
    ex = CliRunner().invoke(train_cli, ["export", str(run / "checkpoint.pt"), "-o", str(model)])
    assert ex.exit_code == 0, ex.output
    from otio_lipsync.model import SyncNet, load_model
    from otio_lipsync.train.data import load_tracks
    from otio_lipsync.train.evaluate import track_dists
    from otio_lipsync.train.export import load_checkpoint
    from otio_lipsync.train.pairs import featurize

    loaded = load_model(model)
    assert loaded.architecture == "syncnet" and isinstance(loaded.net, SyncNet)
    assert loaded.metadata["training"]["steps"] == 2 and loaded.input_spec["video"]["size"] == 224
    trained, _ = load_checkpoint(str(run / "checkpoint.pt"))
    track = featurize([t for t in load_tracks(tiny_faces_dataset) if t.person == "lrs2_demo00004"])[0]
    track.num_windows = 40  # a few windows are enough to compare
    scale = loaded.metadata["distance_scale"]
    np.testing.assert_allclose(track_dists(loaded.net, track, 20), scale * track_dists(trained, track, 20),
                               rtol=1e-4, equal_nan=True)
    check = CliRunner().invoke(lipsync, ["check", "--face-cropped", "--model", str(model), "--json", "-",
                                         str(sources[0])])
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)[0]["model"]["architecture"] == "syncnet"


def test_original_architecture_needs_face_crops(tiny_dataset, tmp_path):
    dataset, _ = tiny_dataset
    result = _fit(dataset, tmp_path / "run", 2, "--arch", "syncnet")
    assert result.exit_code == 2 and "prepare --faces" in result.output
    assert len(result.output.strip().splitlines()) == 1
    mixed = CliRunner().invoke(train_cli, ["prepare", "--faces", str(clip(TINY_CLIPS[0])), "-o", str(dataset)])
    assert mixed.exit_code == 2 and "prepared without --faces" in mixed.output
    bad = _fit(dataset, tmp_path / "run2", 2, "--arch", "syncnet", "--objective", "icsyncnet")
    assert bad.exit_code == 2 and "original network" in bad.output


def test_fit_without_data_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(train_cli, ["fit", str(tmp_path / "empty"), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "run `lipsync-train prepare` first" in result.output



def test_icsyncnet_run_exports_a_model_that_scores_probabilities_and_filters(tiny_dataset, tmp_path):
    """--objective icsyncnet end to end: the exported model gives IC-SyncNet's numbers through `lipsync
    score --metric icsyncnet`, and --filter lists exactly the files whose numbers pass the rule."""
    dataset, _ = tiny_dataset
    run = tmp_path / "ic"
    fitted = _fit(dataset, run, 6, "--objective", "icsyncnet")
    assert fitted.exit_code == 0, fitted.output
    model = tmp_path / "ic.model"
    assert CliRunner().invoke(train_cli, ["export", str(run / "checkpoint.pt"), "-o", str(model)]).exit_code == 0
    files = [str(clip(n)) for n in TINY_CLIPS]
    keep = tmp_path / "keep.txt"
    # a permissive rule keeps some files and a strict one none: the list follows the numbers, not a constant
    scored = CliRunner().invoke(lipsync, ["score", "--metric", "icsyncnet", "--model", str(model), "--face-cropped",
                                          "--json", "-", "--filter", str(keep), "--min-probability", "0",
                                          "--max-offscreen", "1", *files])
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["metric"] == "icsyncnet" and len(report["files"]) == 3
    for entry in report["files"]:
        assert 0.0 <= entry["probability_at_offset"] <= 1.0 and 0.0 <= entry["offscreen_ratio"] <= 1.0
    assert keep.read_text().splitlines() == files
    strict = CliRunner().invoke(lipsync, ["score", "--metric", "icsyncnet", "--model", str(model), "--face-cropped",
                                          "--filter", str(keep), "--min-probability", "1.01", *files])
    assert strict.exit_code == 0 and keep.read_text() == "" and "0 of 3 file(s) pass" in strict.output


def test_icsyncnet_metric_refuses_a_distance_only_model_in_one_line(tmp_path):
    from otio_lipsync.model import registry

    result = CliRunner().invoke(lipsync, ["score", "--metric", "icsyncnet", "--model", str(registry.resolve("house")),
                                          "--face-cropped", str(clip(TINY_CLIPS[0]))])
    assert result.exit_code == 2
    assert "gives distances only" in result.output and "--objective icsyncnet" in result.output
    missing = CliRunner().invoke(lipsync, ["score", "--metric", "icsyncnet", str(clip(TINY_CLIPS[0]))])
    assert missing.exit_code == 2 and "needs --model" in missing.output
    lse_filter = CliRunner().invoke(lipsync, ["score", "--filter", str(tmp_path / "k.txt"), str(clip(TINY_CLIPS[0]))])
    assert lse_filter.exit_code == 2 and "--metric icsyncnet" in lse_filter.output


def test_fit_on_a_missing_gpu_is_one_clear_line(tiny_dataset, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the missing-GPU message cannot be shown here")
    dataset, _ = tiny_dataset
    result = _fit(dataset, tmp_path / "gpu", 3, "--device", "cuda")
    assert result.exit_code == 2
    assert "sees no CUDA GPU" in result.output and "--device cpu" in result.output
    assert not (tmp_path / "gpu" / "checkpoint.pt").exists()
