"""otio_lipsync.ffmpeg_filter: commands that wrap the ffmpeg binary (measure, report, correct files)."""
