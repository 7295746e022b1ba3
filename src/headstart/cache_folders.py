"""Cache folders that are either whole or absent: built under a hidden name, renamed into place.

Both on-disk caches (decoded images, frozen layer groups' outputs) live in folders named by a
hash of everything their contents depend on. A folder under its final name is always complete:
a build writes into `.<key>.partial-<pid>-<random>` and renames it when done, so a build that
is killed leaves only a hidden folder, which is never read and is removed by a later build.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable


def publish(root: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Run build(temporary_folder), then rename that folder to root/key and return it. When another
    process published the same key first, its folder is kept and ours is discarded."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(root)
    final = root / key
    temporary = root / f".{key}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        build(temporary)
        try:
            os.rename(temporary, final)
        except OSError:  # a folder of that name exists: another process finished first
            shutil.rmtree(temporary, ignore_errors=True)
            if not final.is_dir():
                raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def remove_stale_partials(root: Path) -> None:
    """Temporary folders whose process is gone: left by a build that was killed."""
    for path in Path(root).glob(".*.partial-*"):
        try:
            pid = int(path.name.split(".partial-")[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
