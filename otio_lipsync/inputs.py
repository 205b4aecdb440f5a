"""Input discovery: which files a command works on when it is given folders. One walker (`walk_folder`) for
`lipsync check`, `lipsync score` and `lipsync batch` (and the API's callers):

- `walk_folder`: a folder's media files (and timelines, by the suffixes given), recursively, in walk order
  (a folder's files by name, then its sub-folders by name), hidden files skipped, --include/--exclude GLOBs;
- `check_inputs`: `lipsync check`'s arguments -> the files to measure and, before anything loads, the ones
  that cannot be (missing, a folder without media);
- `expand_inputs`: `lipsync score`'s arguments -> files, sorted by path per folder, hidden folders skipped too.

The two spellings of "a folder" (check/batch keep hidden folders and walk order; score skips hidden folders
and sorts by path) are kept as the commands have always had them; both go through `walk_folder`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence

from .errors import LipsyncError, MediaNotFound, UnreadableMedia
from .media import VIDEO_SUFFIXES


def _matches(rel: str, patterns) -> bool:
    base = os.path.basename(rel)
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(base, p) for p in patterns)


def kind_of(path: str, timelines: Iterable[str] = frozenset(),
            media_suffixes: Sequence[str] = VIDEO_SUFFIXES) -> str | None:
    """"media" (a video suffix), "timeline" (one of `timelines`) or None, by the suffix, case-insensitive."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in media_suffixes:
        return "media"
    if suffix in timelines:
        return "timeline"
    return None


def walk_folder(folder: str, include=(), exclude=(), timelines=frozenset(), *, skip_hidden_folders: bool = False,
                media_suffixes: Sequence[str] = VIDEO_SUFFIXES) -> Iterator[tuple[str, str]]:
    """(path, kind) of the media files under folder (and of the timelines, by the given suffixes),
    recursively, in a stable order; hidden files skipped (and hidden folders with skip_hidden_folders); GLOBs
    match the path relative to folder or the name. `lipsync batch`, `lipsync check` and `lipsync score` all
    find files this way."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not (skip_hidden_folders and d.startswith(".")))
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, folder)
            kind = kind_of(name, timelines, media_suffixes)
            if name.startswith(".") or kind is None:
                continue
            if include and not _matches(rel, include):
                continue
            if exclude and _matches(rel, exclude):
                continue
            yield full, kind


def check_inputs(given: Iterable[str]) -> tuple[list[str], dict[str, LipsyncError]]:
    """The files to measure (a folder -> its media files, recursively, found as `lipsync batch` finds
    them) and, before anything loads, the ones that cannot be: {path: LipsyncError}. `-` is stdin."""
    files, bad = [], {}
    for path in given:
        if path != "-" and os.path.isdir(path):
            found = [full for full, _ in walk_folder(path)]
            if not found:
                bad[path] = UnreadableMedia(path, f"is a directory without media files (searched recursively "
                                                  f"for {', '.join(VIDEO_SUFFIXES)})")
                found = [path]
            files += found
        else:
            files.append(path)
            if path != "-" and not os.path.exists(path):
                bad[path] = MediaNotFound(path, "no such file")
    return files, bad


def expand_inputs(paths: Iterable[str], suffixes: Sequence[str] = VIDEO_SUFFIXES) -> list[str]:
    """Files as given; a folder -> its video files (by suffix, case-insensitive), recursively, sorted,
    hidden files and folders skipped. A folder without any video yields nothing."""
    out = []
    for p in paths:
        if p != "-" and os.path.isdir(p):
            out += sorted(full for full, _ in walk_folder(p, skip_hidden_folders=True, media_suffixes=suffixes))
        else:
            out.append(p)
    return out
