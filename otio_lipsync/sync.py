"""Sync stage: 224x224 face frames + 16 kHz audio -> SyncNet distances over +-vshift frames -> offset.

The arithmetic is syncnet_python's `evaluate`, made streaming and fast:
- window i pairs 25-fps frames i..i+4 with MFCC columns 4i..4i+19; there are
  `min(frames, samples // 640) - 5` windows (one fewer than complete ones, as the reference);
- dists[i, k] = ||v_i - a_(i+k-vshift) + 1e-6||, audio outside the clip counts as a zero vector;
- offset = vshift - argmin(mean_i dists), confidence = median - min of the mean distances,
  framewise confidence = median(mean) - dists[:, k*], median-filtered over 9 windows.
`edges="valid"` (the default for trained compact models) differs in one place: the mean over windows
leaves out the pairs whose audio lies outside the clip. Those compare a face with a zero vector, and on a
short clip (a 3.7 s one has 15 of 87 windows padded at +-15 frames) a model whose embeddings are small
finds its minimum there, at the edge of the search, whatever the clip's real offset. `"zero"` is the
reference's arithmetic, kept for syncnet_v2 so that its numbers stay equal to syncnet_python's.
The search is +-1 s (25 frames, the paper's) by default, +-15 with the reference's arithmetic; with
"valid" a clip too short for that many shifts searches less (`usable_vshift`).
Embeddings are computed in batches as frames and audio arrive and dropped once every distance that
needs them is known, so memory stays flat however long the input is; only the distances are kept.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .errors import TooShort
from .filters import median_filter
from .model import FastSyncNet, LoadedModel, MfccStream, SyncNet, int8
from .model.compact import CompactSyncNet
from .model.lips import LipFeatureStream, LipsSyncNet
from .model.syncnet import (
    CROP_SIZE,
    EMBEDDING_DIM,
    FRAMES_PER_WINDOW,
    MFCC_COLUMNS_PER_WINDOW,
)

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
COLUMNS_PER_FRAME = 4
FRAME_MS = 40  # one analysis frame at 25 fps
DEFAULT_MAX_OFFSET_MS = 1000  # the paper's +-1 s search
DEFAULT_VSHIFT = DEFAULT_MAX_OFFSET_MS // FRAME_MS  # 25 frames, for trained compact models (edges "valid")
REFERENCE_VSHIFT = 15  # syncnet_python's --vshift: the default with its arithmetic (edges "zero"), for parity
# with edges "valid", the least windows whose audio lies inside the clip at the extreme shifts: fewer, and
# a noisy mean there makes false minima at the edge of the search (README: Offset range)
MIN_EDGE_WINDOWS = 50
MIN_VSHIFT = 5  # a clip that cannot search +-200 ms is refused: a narrower search would only confirm 0
MAX_VSHIFT = 250  # +-10 s at 25 fps: memory grows with the search range
DEFAULT_BATCH = 16  # as fast as 32 on CPU, half the activation memory
# audio windows go through their (~7x cheaper) tower in batches of at least this many: 256 ran SyncNet's audio
# tower ~27% faster than 64 (AMD EPYC, 2 cores), for ~50 MB of activations and ~10 s of audio held back
MIN_AUDIO_BATCH = 256
MAX_BATCH = 1024  # ~3 GB of lip windows in float32
MEDFILT_KERNEL = 9
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.uint8}
EDGES = ("zero", "valid")


class UnsupportedPrecision(ValueError):
    """A precision this model or device cannot run (the CLI says it as a --precision error)."""


def native_bfloat16() -> bool:
    """AVX512-BF16 or AMX: without them torch emulates bfloat16 convolutions, ~20x slower than float32
    (an AMD EPYC machine of this project: 18.8 s against 0.9 s for 16 SyncNet windows)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def audio_delay_ms(offset_frames: int, fps: float = 25.0) -> float:
    """The one place the sign is converted: positive = the sound lags the picture."""
    return -offset_frames * 1000.0 / fps


@dataclass
class SyncResult:
    dists: np.ndarray  # (num_windows, 2*vshift+1) float32
    mean_dists: np.ndarray
    offset_frames: int
    min_distance: float
    confidence: float
    framewise_confidence: np.ndarray  # median-filtered, one per window start frame
    framewise_confidence_unfiltered: np.ndarray
    num_frames: int
    num_samples: int
    vshift: int
    edges: str = "zero"  # how the mean over windows treats audio outside the clip (see the module doc)
    lip_embeddings_first: np.ndarray = field(repr=False, default=None)  # first windows, for checks
    audio_embeddings_first: np.ndarray = field(repr=False, default=None)

    @property
    def num_windows(self) -> int:
        return len(self.dists)

    @property
    def audio_delay_ms(self) -> float:
        return audio_delay_ms(self.offset_frames)

    def narrowed(self, vshift: int) -> SyncResult:
        """The same analysis searched over +-vshift (<= self.vshift): the middle columns, reduced again."""
        if vshift >= self.vshift:
            return self
        dists = np.ascontiguousarray(self.dists[:, self.vshift - vshift:self.vshift + vshift + 1])
        offset, minval, conf, mean, fconf, fconf_filtered = offset_from_dists(dists, vshift, self.edges)
        return replace(self, dists=dists, mean_dists=mean, offset_frames=offset, min_distance=minval,
                       confidence=conf, framewise_confidence=fconf_filtered,
                       framewise_confidence_unfiltered=fconf, vshift=vshift)


def default_vshift(edges: str) -> int:
    """The search half-width when the user names none: syncnet_python's 15 frames with its arithmetic
    (edges "zero", so syncnet_v2's numbers stay the reference's), the paper's +-1 s otherwise."""
    return REFERENCE_VSHIFT if edges == "zero" else DEFAULT_VSHIFT


def search_vshift(vshift: int | None = None, max_offset_ms: float | None = None) -> int | None:
    """The one place a user's search range becomes frames: --max-offset-ms (rounded up to whole 40 ms
    frames, so the range asked for is searched) or --vshift (frames, the reference's spelling). None
    when neither is given: the engine then takes `default_vshift` for its model. Both given must agree."""
    if max_offset_ms is None:
        return vshift
    if not max_offset_ms > 0:
        raise ValueError(f"--max-offset-ms must be more than 0, not {max_offset_ms:g}")
    frames = int(np.ceil(max_offset_ms / FRAME_MS - 1e-9))
    if vshift is not None and vshift != frames:
        raise ValueError(f"--vshift {vshift} (+-{vshift * FRAME_MS} ms) and --max-offset-ms {max_offset_ms:g} "
                         f"(+-{frames} frames) disagree: give one of them")
    return frames


def usable_vshift(track_windows: list[int], vshift: int, edges: str, source: str = "<input>") -> int:
    """The widest search, up to +-vshift, whose extreme shifts still have MIN_EDGE_WINDOWS windows with
    audio inside their track, over all tracks (at shift +-v a track of n windows has n - v). A clip
    shorter than that searches a narrower range and says so (its `vshift`); one that cannot keep
    +-MIN_VSHIFT is refused. Edges "zero" keep the reference's range, whatever the length."""
    if edges != "valid":
        return vshift
    v = vshift
    while v > 0 and sum(max(0, n - v) for n in track_windows) < MIN_EDGE_WINDOWS:
        v -= 1
    if v < min(vshift, MIN_VSHIFT):
        seconds = sum(track_windows) / 25
        raise TooShort(source, f"too short to measure: {seconds:.1f} s ({sum(track_windows)} windows) of face with "
                               f"audio; a +-{MIN_VSHIFT * FRAME_MS} ms search needs "
                               f"{(MIN_EDGE_WINDOWS + MIN_VSHIFT + FRAMES_PER_WINDOW) / 25:.1f} s (each shift "
                               f"averaged over {MIN_EDGE_WINDOWS} windows with audio inside the clip)")
    return v


def best_offset(mean_dists: torch.Tensor, vshift: int) -> tuple[int, float, float, torch.Tensor]:
    """(offset, minval, conf, median) of a mean distance curve, with the reference's torch reductions
    (first index on ties; the median of 31 values is the middle one)."""
    minval, minidx = torch.min(mean_dists, 0)
    median = torch.median(mean_dists)
    return vshift - int(minidx), float(minval), float(median - minval), median


def inside_clip(num_windows: int, vshift: int) -> np.ndarray:
    """bool (num_windows, 2*vshift+1): True where window i's audio partner i+k-vshift lies inside the clip."""
    idx = np.arange(num_windows)[:, None] + np.arange(-vshift, vshift + 1)[None, :]
    return (idx >= 0) & (idx < num_windows)


def mean_curve(rows: np.ndarray, weights: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """The (weighted) mean of distance rows per shift; with `inside`, only over the pairs inside the clip
    (a shift that no row sees inside, on a clip shorter than the search, keeps the plain mean)."""
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.broadcast_to(w[:, None], rows.shape)
    plain = (rows * w).sum(0) / np.maximum(w.sum(0), 1e-12)
    if inside is None:
        return plain.astype(np.float32)
    w = w * inside
    total = w.sum(0)
    masked = (rows * w).sum(0) / np.maximum(total, 1e-12)
    return np.where(total > 0, masked, plain).astype(np.float32)


def offset_from_dists(dists: np.ndarray, vshift: int, edges: str = "zero") -> tuple[int, float, float, np.ndarray, np.ndarray, np.ndarray]:
    """(offset, minval, conf, mean_dists, fconf, fconf_filtered): with edges "zero" exactly as the
    reference reduces them; with "valid" the mean leaves out pairs whose audio is outside the clip."""
    d = torch.from_numpy(np.ascontiguousarray(dists, dtype=np.float32))
    if edges == "valid":
        mean = torch.from_numpy(mean_curve(dists, inside=inside_clip(len(dists), vshift)))
    else:
        mean = torch.mean(d, 0)
    offset, minval, conf, median = best_offset(mean, vshift)
    fconf = median.numpy() - d[:, vshift - offset].numpy()
    fconf_filtered = median_filter(fconf, MEDFILT_KERNEL).astype(np.float32)
    return offset, minval, conf, mean.numpy(), fconf, fconf_filtered


@contextmanager
def torch_threads(count: int | None):
    """torch's CPU threads set to `count` inside the block (None: left as they are), and as they were after it,
    whatever the block did to them."""
    before = torch.get_num_threads()
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class SyncEngine:
    """One loaded network, reusable across files. `stream()` starts the analysis of one input."""

    def __init__(self, model: LoadedModel | SyncNet, vshift: int | None = None,
                 batch_size: int = DEFAULT_BATCH, device: str = "cpu", precision: str = "float32",
                 edges: str | None = None):
        """precision "float32" keeps parity with syncnet_python; "bfloat16" runs the lip tower (the
        cost) in bf16, ~1.7x faster on CPUs with native bf16 (AVX512-BF16, AMX), distances within ~1%;
        "int8" runs it quantized on the CPU (model/int8.py; SyncNet-format weights only).
        edges (see the module doc): default "zero" for SyncNet (the reference's numbers), "valid" for
        compact models, which have no reference to agree with. vshift None: `default_vshift(edges)`."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if edges is not None and edges not in EDGES:
            raise ValueError(f"edges must be one of {', '.join(EDGES)}, not {edges!r}")
        net = model.net if isinstance(model, LoadedModel) else model
        self.model = model if isinstance(model, LoadedModel) else None
        self.device = torch.device(device)
        self._int8_tower = None
        if precision == "int8":
            if not isinstance(net, SyncNet):
                raise UnsupportedPrecision("--precision int8 is for SyncNet-format weights (syncnet_v2, "
                                           "lipsync-train fit --arch syncnet); this model is a small one already: "
                                           "use float32")
            if self.device.type != "cpu":
                raise UnsupportedPrecision(f"--precision int8 runs on the CPU only, not on {device}: use --device cpu")
        if isinstance(net, SyncNet):
            self.fast = FastSyncNet(net).to(self.device).channels_last()
            self.lip_dtype = PRECISIONS[precision]
            if precision == "int8":
                self._int8_tower = int8.Int8Tower(self.fast)
            else:
                self.fast.lip_conv1.to(self.lip_dtype)
                self.fast.lip_tower.to(self.lip_dtype)
            self.embedding_dim, self.audio_feature, self.audio_columns = EMBEDDING_DIM, "mfcc13", 20
            self.edges = edges or "zero"
        else:  # a trained CompactSyncNet or LipsSyncNet: already small; float32 (bf16 gains nothing at this size)
            self.fast = net.to(self.device).eval()
            # a compact net reads grey mouths off the uint8 crops: no float copy of whole 224x224 crops
            self.lip_dtype = torch.uint8 if isinstance(net, CompactSyncNet) else torch.float32
            self.embedding_dim = net.config["embedding_dim"]
            self.audio_feature, self.audio_columns = net.audio_feature, net.audio_columns
            self.edges = edges or "valid"
        # window i's audio is centred on frames i..i+4: a longer window reaches `audio_pad` columns back
        self.audio_pad = (self.audio_columns - MFCC_COLUMNS_PER_WINDOW) // 2
        self.lips = isinstance(net, LipsSyncNet)  # lip geometry: the face mesh runs on the crops (model/lips.py)
        self.mesh = None
        if self.lips:
            if net.centre < 0:
                raise ValueError("this lips model centres on a whole track's median, which a stream cannot know")
            from .faces.mesh import FaceMesh

            self.mesh = FaceMesh()
        self.precision = precision
        self.vshift = default_vshift(self.edges) if vshift is None else vshift
        self.batch_size = batch_size
        self.audio_batch = max(MIN_AUDIO_BATCH, 4 * batch_size)
        # a GPU takes one big batch for all face tracks (`embed_together`) better than one small batch each;
        # on the CPU each track's whole batches keep one shape, whose kernels oneDNN has built already
        self.batch_tracks = self.device.type != "cpu" and not self.lips and self._int8_tower is None
        # torch threads for the model while raw footage decodes beside it, unless the caller chose (`threads`,
        # set by make_engine): a small net's ops are too short to split, and its second thread's hand-offs took
        # the decoder's core (1080p25: 6.5-7.0 s -> 5.2-6.0 s with one); SyncNet's convolutions want both cores
        self.threads: int | None = None
        self.footage_threads = 1 if self.device.type == "cpu" and not isinstance(net, SyncNet) else None

    def int8_lips(self) -> int8.Int8Lips | None:
        """A new stream's own int8 lip stream (it calibrates on that stream's first batch); None unless int8."""
        return None if self._int8_tower is None else self._int8_tower.stream()

    @torch.inference_mode()
    def lip_embeddings(self, frames: torch.Tensor, count: int | None = None,
                       quantized: int8.Int8Lips | None = None) -> torch.Tensor:
        """uint8 (T, 224, 224, 3) BGR frames -> (count, 1024) embeddings of the first `count`
        (default: all T-4) 5-frame windows; with precision int8 through `quantized` (a stream's; default: a
        new one, calibrated on these frames)."""
        count = len(frames) - FRAMES_PER_WINDOW + 1 if count is None else count
        quantized = quantized or self.int8_lips()
        out = []
        for start in range(0, count, self.batch_size):
            n = min(self.batch_size, count - start)
            if quantized is not None:
                out.append(quantized(frames[start:start + n + FRAMES_PER_WINDOW - 1], n))
                continue
            chunk = frames[start:start + n + FRAMES_PER_WINDOW - 1].to(self.device, self.lip_dtype)
            # (T, H, W, 3) memory is the channels-last-3d layout of a (1, 3, T, H, W) tensor
            out.append(self.fast.forward_lip_sequence(chunk.permute(3, 0, 1, 2).unsqueeze(0)))
        return torch.cat(out) if out else torch.zeros(0, self.embedding_dim)

    @torch.inference_mode()
    def embed_together(self, streams: list[SyncStream]) -> None:
        """Once any stream (one per open face track) has a whole batch of lip windows waiting, every
        stream's waiting windows go through the network in one call (streams fed with embed=False)."""
        waiting = [(s, s.waiting_windows()) for s in streams]
        waiting = [(s, n) for s, n in waiting if n > 0]
        if not any(n >= self.batch_size for _, n in waiting):
            return
        runs = [s.waiting_frames(n).to(self.device, self.lip_dtype).permute(3, 0, 1, 2).unsqueeze(0)
                for s, n in waiting]
        embeddings = self.fast.forward_lip_runs(runs).split([n for _, n in waiting])
        for (stream, n), emb in zip(waiting, embeddings):
            stream.take_lip(emb, n)

    @torch.inference_mode()
    def audio_embeddings(self, columns: torch.Tensor) -> torch.Tensor:
        """float32 (rows, C) features -> embeddings of windows at every 4th column, (N, D)."""
        windows = columns.unfold(1, self.audio_columns, COLUMNS_PER_FRAME).permute(1, 0, 2)
        step = self.audio_batch
        out = [self.fast.forward_aud(windows[s:s + step].unsqueeze(1).to(self.device))
               for s in range(0, len(windows), step)]
        return torch.cat(out) if out else torch.zeros(0, self.embedding_dim)

    def stream(self, source: str = "<input>", keep_first: int = 20) -> SyncStream:
        return SyncStream(self, source, keep_first)

    def analyse(self, chunks, source: str = "<input>") -> SyncResult:
        """Consume ("video", frames) / ("audio", samples) chunks, as `media.decode` yields them."""
        stream = self.stream(source)
        for kind, data in chunks:
            if kind == "video":
                stream.feed_video(data)
            elif kind == "audio":
                stream.feed_audio(data)
        result = stream.finish()
        return result.narrowed(usable_vshift([result.num_windows], self.vshift, self.edges, source))


class SyncStream:
    def __init__(self, engine: SyncEngine, source: str, keep_first: int):
        self.engine = engine
        self.source = source
        self.vshift = engine.vshift
        self.keep_first = keep_first
        self.mfcc = MfccStream(engine.audio_feature)
        self.window_columns = engine.audio_columns
        self.num_frames = 0
        self.num_samples = 0
        self._frames = torch.zeros(0, CROP_SIZE, CROP_SIZE, 3, dtype=torch.uint8)  # frames not yet windowed
        # feature columns not yet windowed, after `audio_pad` zero columns for windows that reach before 0
        self._columns = torch.zeros(self.mfcc.rows, engine.audio_pad)
        self._lip: list[torch.Tensor] = []  # embeddings from index self._lip_base on
        self._lip_base = 0
        self._aud: list[torch.Tensor] = []
        self._aud_base = 0
        self._next_row = 0
        self._rows: list[np.ndarray] = []
        self._first_lip: list[torch.Tensor] = []
        self._first_aud: list[torch.Tensor] = []
        self._lipstream = LipFeatureStream(engine.fast, engine.mesh, engine.fast.centre) if engine.lips else None
        self._int8 = engine.int8_lips()

    # -- input ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def feed_video(self, frames: np.ndarray, embed: bool = True) -> None:
        """embed=False: the frames wait for `SyncEngine.embed_together` (or `finish`) to embed them."""
        if frames.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"SyncNet needs 224x224x3 frames, got {frames.shape[1:]}")
        self.num_frames += len(frames)
        if self._lipstream is not None:
            emb = self._lipstream.push(frames)
            if len(emb):
                self._add_lip(emb)
                self._emit_rows(final=False)
            return
        self._frames = torch.cat([self._frames, torch.from_numpy(np.ascontiguousarray(frames))])
        bs = self.engine.batch_size
        n = self.waiting_windows() // bs * bs  # whole batches: one shape, one kernel
        if embed and n:
            self.take_lip(self.engine.lip_embeddings(self._frames, n, self._int8), n)

    def waiting_windows(self) -> int:
        """Lip windows whose frames have arrived but are not embedded yet."""
        return max(0, len(self._frames) - FRAMES_PER_WINDOW + 1)

    def waiting_frames(self, windows: int) -> torch.Tensor:
        """uint8 (windows + 4, 224, 224, 3): the frames of the first `windows` waiting windows."""
        return self._frames[:windows + FRAMES_PER_WINDOW - 1]

    def take_lip(self, embeddings: torch.Tensor, windows: int) -> None:
        """The embeddings of the first `windows` waiting windows, computed: their frames are dropped."""
        self._add_lip(embeddings)
        self._frames = self._frames[windows:].clone()
        self._emit_rows(final=False)

    @torch.inference_mode()
    def feed_audio(self, samples: np.ndarray) -> None:
        self.num_samples += len(samples)
        new = self.mfcc.feed(samples)
        if new.shape[1]:
            self._columns = torch.cat([self._columns, torch.from_numpy(new.astype(np.float32))], 1)
        n = (self._columns.shape[1] - self.window_columns) // COLUMNS_PER_FRAME + 1
        if n >= self.engine.audio_batch:
            self._add_aud(self.engine.audio_embeddings(self._columns))
            self._columns = self._columns[:, n * COLUMNS_PER_FRAME:].clone()
            self._emit_rows(final=False)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _add_lip(self, emb: torch.Tensor) -> None:
        self._lip.append(emb)
        if sum(map(len, self._first_lip)) < self.keep_first:
            self._first_lip.append(emb[: self.keep_first])

    def _add_aud(self, emb: torch.Tensor) -> None:
        self._aud.append(emb)
        if sum(map(len, self._first_aud)) < self.keep_first:
            self._first_aud.append(emb[: self.keep_first])

    def _emit_rows(self, final: bool, num_windows: int | None = None) -> None:
        if not self._lip or not self._aud:
            return
        lip, lip_base = torch.cat(self._lip), self._lip_base
        aud, aud_base = torch.cat(self._aud), self._aud_base
        lip_end, aud_end = lip_base + len(lip), aud_base + len(aud)
        if final:
            last_row = num_windows  # rows [next_row, num_windows); audio beyond num_windows is zero
            aud_limit = num_windows
        else:
            # a row is final once every audio index it needs exists and lies inside the clip; the
            # clip has at least min(frames, samples//640) - 5 windows, whatever comes later
            known_windows = min(self.num_frames, self.num_samples // SAMPLES_PER_FRAME) - FRAMES_PER_WINDOW
            last_row = min(lip_end, aud_end - self.vshift, known_windows - self.vshift)
            aud_limit = known_windows
        if last_row > self._next_row:
            rows = torch.arange(self._next_row, last_row, device=lip.device)  # on the network's device
            k = torch.arange(-self.vshift, self.vshift + 1, device=lip.device)
            idx = rows[:, None] + k[None, :]
            valid = (idx >= 0) & (idx < aud_limit)
            gathered = aud[(idx - aud_base).clamp(0, len(aud) - 1)] * valid[..., None]
            v = lip[rows - lip_base][:, None, :]
            dists = torch.nn.functional.pairwise_distance(v, gathered)
            self._rows.append(dists.cpu().numpy().astype(np.float32))
            self._next_row = last_row
        # drop what no later row needs
        keep_lip_from = self._next_row
        keep_aud_from = max(0, self._next_row - self.vshift)
        self._lip, self._lip_base = [lip[keep_lip_from - lip_base:]], keep_lip_from
        self._aud, self._aud_base = [aud[max(0, keep_aud_from - aud_base):]], max(aud_base, keep_aud_from)

    # -- output ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def finish(self) -> SyncResult:
        num_windows = min(self.num_frames, self.num_samples // SAMPLES_PER_FRAME) - FRAMES_PER_WINDOW
        if num_windows < 1:
            raise TooShort(self.source, f"too short: {self.num_frames} video frames and "
                           f"{self.num_samples / 16000:.2f} s of audio at 25 fps give no 5-frame window "
                           f"(at least 6 frames, 0.24 s, of both are needed)")
        if self._lipstream is not None:
            rest = self._lipstream.finish()
            if len(rest):
                self._add_lip(rest)
        elif len(self._frames) >= FRAMES_PER_WINDOW:
            self._add_lip(self.engine.lip_embeddings(self._frames, quantized=self._int8))
        pad = self.engine.audio_pad
        if pad:  # windows near the end reach past the last column
            self._columns = torch.cat([self._columns, torch.zeros(self.mfcc.rows, pad)], 1)
        if self._columns.shape[1] >= self.window_columns:
            self._add_aud(self.engine.audio_embeddings(self._columns))
        self._emit_rows(final=True, num_windows=num_windows)
        dists = np.concatenate(self._rows)[:num_windows]
        offset, minval, conf, mean, fconf, fconf_filtered = offset_from_dists(dists, self.vshift, self.engine.edges)
        first = lambda parts: torch.cat(parts)[: self.keep_first].cpu().numpy() if parts else None
        return SyncResult(
            dists=dists, mean_dists=mean, offset_frames=offset, min_distance=minval, confidence=conf,
            framewise_confidence=fconf_filtered, framewise_confidence_unfiltered=fconf,
            num_frames=self.num_frames, num_samples=self.num_samples, vshift=self.vshift, edges=self.engine.edges,
            lip_embeddings_first=first(self._first_lip), audio_embeddings_first=first(self._first_aud),
        )
