"""Who speaks when: speech activity (silero VAD), one likeliest speaker at a time, nobody in silence, and a
two-face composite of real footage end to end. Accuracy on composites and on the RTTM scene is measured by
benchmarks/eval_speakers.py (README: Active speakers), not asserted here: it is the model's, not the rule's."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from otio_lipsync.speakers import UNCALIBRATED, SpeakerOptions, SpeakingModel, attribute, offset_margin
from otio_lipsync.speech import SpeechActivity, speech_frames, window_speech

from .conftest import CLIPS, need

FPS = 25


def _speech(samples: np.ndarray) -> np.ndarray:
    vad = SpeechActivity()
    for chunk in np.array_split(samples, 7):  # any chunking
        vad.feed(chunk)
    return speech_frames(vad.frame_probability())


def _decode_audio(path) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.int16)


def test_speech_activity_hears_speech_and_not_silence_or_a_tone():
    speech = _speech(_decode_audio(need(CLIPS / "synced_edtalk_ted_lieu_01.mp4")))
    assert len(speech) == 250 and speech.mean() > 0.6  # a talking head talks most of the time
    t = np.arange(16000 * 3) / 16000
    assert not _speech(np.zeros(len(t), np.int16)).any()
    assert _speech((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)).mean() < 0.1


def test_window_speech_follows_the_offset_and_treats_outside_as_silence():
    frames = np.zeros(100, bool)
    frames[50:60] = True
    at0 = window_speech(frames, 10, 80, 0)  # window i: frames 10+i .. 14+i
    assert at0[36] and at0[49] and not at0[35] and not at0[50]
    late = window_speech(frames, 10, 80, 5)  # the sound 5 frames later than the picture
    assert late[31] and not late[30]
    assert not window_speech(frames, 90, 20, 0)[15:].any()  # past the end of the audio: silence


def test_one_likeliest_speaker_at_a_time_and_nobody_in_silence():
    n = 200
    up, down = np.where(np.arange(n) < 100, 2.0, -2.0), np.where(np.arange(n) < 100, -2.0, 2.0)
    speech = np.ones(n, bool)
    speech[140:170] = False  # a pause
    probs, masks = attribute([up, down], [0, 0], [speech, speech], [True, True], UNCALIBRATED)
    a, b = masks
    assert not (a & b).any()  # never both at the default threshold
    assert a[:90].all() and not a[110:].any() and b[110:140].all() and b[175:].all()
    assert not (a | b)[145:165].any()  # nobody speaks in silence
    assert probs[0][:80].min() > 0.5 > probs[0][120:].max()
    # a face whose sound is not its own (track verdict no_sync) never speaks, nor competes; a lone face speaks
    # wherever there is speech
    _, masks = attribute([up, down], [0, 0], [speech, speech], [True, False], UNCALIBRATED)
    assert not masks[1].any() and masks[0][:140].all() and masks[0][170:].all()
    _, (alone,) = attribute([down], [0], [speech], [True], UNCALIBRATED)
    assert alone[:140].all() and not alone[145:165].any()
    # two at once only above the threshold
    model = SpeakingModel(sigma_frames=2.0, alone=[1.0, 0.0], among=[1.0, 0.0, 0.0], reach_frames=0)
    _, masks = attribute([up + 5, up + 4], [0, 0], [speech, speech], [True, True], model,
                         SpeakerOptions(threshold=0.9))
    assert (masks[0] & masks[1])[:90].all()


def test_offset_margin_reaches_the_neighbouring_lags_and_leaves_outside_audio_out():
    d = np.full((3, 7), 10.0)  # vshift 3: lags -3..3
    d[0, 3] = 4.0  # window 0 fits best at the offset 0
    d[1, 5] = 4.0  # window 1 two frames away
    assert offset_margin(d, 0, 3)[0] == 6.0 and offset_margin(d, 0, 3)[1] == 0.0
    assert offset_margin(d, 0, 3, reach=2)[1] == 6.0
    inside = np.ones((3, 7), bool)
    inside[2, 2:5] = False  # window 2: no audio near the offset
    assert offset_margin(d, 0, 3, inside)[2] == 0.0


@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    """ted_lieu (left) and voxceleb2_id00104 (right), both talking; the sound is the left face's for 0-3 s,
    silence for 3-5 s, the right face's for 5-8 s."""
    left, right = need(CLIPS / "synced_edtalk_ted_lieu_01.mp4"), need(CLIPS / "synced_voxceleb2_id00104_01.mp4")
    out = tmp_path_factory.mktemp("composite") / "two_faces.mp4"
    graph = ("[0:v]scale=256:256,setsar=1,fps=25[a];[1:v]scale=256:256,setsar=1,fps=25[b];[a][b]hstack=inputs=2[v];"
             "[0:a]aresample=16000,volume='if(lt(t,3),1,0)':eval=frame[x];"
             "[1:a]aresample=16000,volume='if(gte(t,5),1,0)':eval=frame[y];[x][y]amix=inputs=2:normalize=0[au]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(left), "-i", str(right), "-filter_complex", graph,
                    "-map", "[v]", "-map", "[au]", "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                    "-c:a", "aac", str(out)], check=True)
    js = out.with_suffix(".json")
    subprocess.run(["lipsync", "check", str(out), "-q", "--json", str(js)], check=True)
    return json.loads(js.read_text())[0]


def test_composite_two_faces_offset_speech_and_no_overlap(composite):
    a = composite
    assert len(a["tracks"]) == 2
    # each clip is in sync within two frames on its own: the composite's offset is one of its faces', not noise
    assert abs(a["offset_frames"]) <= 2, a["offset_frames"]
    # speech activity: the silent 3-5 s holds no speech and nobody speaks there
    assert a["speech"] and not any(s < 4.6 and e > 3.4 for s, e in a["speech"])
    for track in a["tracks"]:
        assert not any(s < 4.6 and e > 3.4 for s, e in track["speaking"]), track["speaking"]
        assert track["speaking_probability"] is None or len(track["speaking_probability"]) == track["num_windows"]
    # one speaker at a time (the default threshold 0.9 is above anything this model gives)
    frames = [np.zeros(200, bool) for _ in range(2)]
    for mask, track in zip(frames, a["tracks"]):
        for s, e in track["speaking"]:
            mask[int(s * FPS):int(e * FPS)] = True
    assert not (frames[0] & frames[1]).any()


def test_gaussian_smoothing_equals_scipys():
    """Speaking probabilities smooth with numpy's convolution (importing scipy cost every process ~0.2 s); it
    must give scipy.ndimage.gaussian_filter1d(mode="nearest")'s values, on series shorter than the kernel too."""
    import scipy.ndimage

    from otio_lipsync.filters import gaussian_smooth

    rng = np.random.default_rng(4)
    for n in (1, 5, 40, 600):
        for sigma in (0.5, 3.0, 12.5):
            values = rng.normal(size=n) * 4
            np.testing.assert_allclose(gaussian_smooth(values, sigma),
                                       scipy.ndimage.gaussian_filter1d(values, sigma, mode="nearest"),
                                       rtol=0, atol=1e-12)
