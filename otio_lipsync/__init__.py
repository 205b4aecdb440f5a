"""otio-lipsync: lip-sync analysis and correction for post-production, built on SyncNet."""

__version__ = "0.1.0"
# bumped whenever the same input, model and options give other numbers, so that stored results (the OTIO
# cache, batch items) are computed again rather than mixed with new ones. 2: edges="valid" (sync.py);
# 3: verdict, sync_probability and evidence (verdict.py), adaptive shot cuts, small-face tiles, drift
# evidence; compact models search +-1 s by default (sync.default_vshift)
RESULT_REVISION = 3
