"""otio_lipsync.train: `lipsync-train`, SyncNet's self-supervised training (prepare, fit, eval, export)."""
