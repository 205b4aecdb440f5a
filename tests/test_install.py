"""The package as a user gets it: the built wheel in a fresh venv checks raw footage with nothing else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO, clip

pytestmark = pytest.mark.slow


def _dependency_dirs() -> list[str]:
    """This interpreter's site-packages folders (the shared venv's too), never the repo itself: the fresh
    venv reaches the installed dependencies through a .pth, so nothing is downloaded. Folders named in a
    .pth do not have their own .pth files run, so this checkout's editable finder stays out."""
    return [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))
            and Path(p).resolve() != REPO]


def _clone(target: Path) -> Path:
    """The checkout's files as a clone has them (tracked and new, not ignored), so that the build's
    build/ and egg-info land here and not in the checkout."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"needs a git checkout to list its files: {listed.stderr.strip()}")
    for rel in filter(None, listed.stdout.split("\0")):
        if (REPO / rel).is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, target / rel)
    return target


def test_built_wheel_checks_raw_footage_in_a_fresh_venv(tmp_path):
    source = clip("synced_mead_m030_01.mp4")
    wheels = tmp_path / "wheels"
    tree = _clone(tmp_path / "clone")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                            "-w", str(wheels), str(tree)], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert "copying" in build.stdout + build.stderr  # -v shows setuptools' own output, warnings included
    assert "is absent from the `packages` configuration" not in build.stdout + build.stderr
    (wheel,) = wheels.glob("otio_lipsync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "otio_lipsync/faces/models/face_detection_full_range.tflite" in names
    assert "otio_lipsync/model/weights/house.model" in names
    assert any(n.endswith("licenses/NOTICE") for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "zz_deps.pth").write_text("".join(f"{p}\n" for p in _dependency_dirs()))
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                              str(wheel)], capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OTIO_LIPSYNC_BLAZEFACE")}
    where = subprocess.run([str(python), "-c", "import otio_lipsync.faces.detectors as d; "
                            "print(d.__file__); print(d.find_blazeface_model())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    module, model = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(model).is_relative_to(site)

    run = subprocess.run([str(env_dir / "bin" / "lipsync"), "check", "--json", "-", str(source)],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    (entry,) = json.loads(run.stdout)
    assert entry["tracks"] and isinstance(entry["audio_delay_ms"], float)
    assert list(tmp_path.glob("*.json")) == []
