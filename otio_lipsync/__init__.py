"""otio-lipsync: lip-sync analysis and correction for post-production, built on SyncNet."""

__version__ = "0.1.0"
