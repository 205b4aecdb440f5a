"""QC standards for audio/video timing, and the pass/fail verdict on an analysis.

Limits are how far the sound may *lead* (come before) and *lag* (come after) the picture:
- EBU R37 (2007, "The relative timing of the sound and vision components of a television signal"):
  at the end of the chain, lead <= 40 ms, lag <= 60 ms;
- ITU-R BT.1359-1 (1998, "Relative timing of sound and vision for broadcasting"), threshold of
  acceptability: lead <= 90 ms, lag <= 185 ms (detectability is 45 / 125 ms);
- ATSC IS-191 (2003, "Relative Timing of Sound and Vision for Broadcast Operations"): lead <= 15 ms,
  lag <= 45 ms.
SyncNet measures in whole 25-fps frames (40 ms), so a limit below 40 ms passes only an exact 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Standard:
    key: str
    name: str
    lead_ms: float
    lag_ms: float
    source: str


STANDARDS = {s.key: s for s in [
    Standard("ebu-r37", "EBU R37", 40, 60, "EBU Technical Recommendation R37-2007"),
    Standard("bt1359", "ITU-R BT.1359-1 (acceptability)", 90, 185, "ITU-R BT.1359-1 (1998)"),
    Standard("atsc-is191", "ATSC IS-191", 15, 45, "ATSC Implementation Subcommittee Finding IS-191 (2003)"),
]}


def verdict(standard: Standard, audio_delay_ms: float, drift: dict | None = None,
            sync_verdict: str | None = None) -> dict:
    """Pass when the file's offset and every confident drift span lie within the limits. `failure` names
    the class of a fail: `offset`, `drift`, or `no_sync` (sync_verdict: the Analysis' verdict; the audio
    does not match the faces, so there is no offset to hold against the limits)."""
    def within(ms: float) -> bool:
        return -standard.lead_ms <= ms <= standard.lag_ms

    reasons, failure = [], None
    if sync_verdict == "no_sync":
        reasons.append("no sync found: the audio does not match the faces")
        failure = "no_sync"
    elif not within(audio_delay_ms):
        side = "lags" if audio_delay_ms > 0 else "leads"
        limit = standard.lag_ms if audio_delay_ms > 0 else standard.lead_ms
        reasons.append(f"audio {side} by {abs(audio_delay_ms):.0f} ms (limit {limit:.0f} ms)")
        failure = "offset"
    if failure != "no_sync" and drift and drift.get("verdict") == "drifting":
        bad = [s for s in drift["spans"] if not within(s["audio_delay_ms"])]
        if bad:
            reasons.append(f"drifts out of tolerance ({drift['ms_per_minute']:+.1f} ms/min; "
                           f"{len(bad)} span(s) outside, first at {bad[0]['start_s']:.0f} s)")
            failure = failure or "drift"
    return {"standard": standard.key, "name": standard.name, "source": standard.source,
            "limits_ms": {"lead": standard.lead_ms, "lag": standard.lag_ms},
            "audio_delay_ms": audio_delay_ms, "pass": not reasons, "failure": failure, "reasons": reasons}


def describe(result: dict) -> str:
    if result["pass"]:
        return f"{result['name']}: PASS"
    return f"{result['name']}: FAIL ({'; '.join(result['reasons'])})"


__all__ = ["STANDARDS", "Standard", "describe", "verdict"]
