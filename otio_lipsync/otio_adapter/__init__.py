"""The `lipsync` OpenTimelineIO plugin: found through the `opentimelineio.plugins` entry point, which names
this package; OTIO reads `plugin_manifest.json` beside this file."""
