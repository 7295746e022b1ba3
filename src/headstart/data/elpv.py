"""The embedded default data set: ELPV solar-cell images, written out as an ordinary image folder.

ELPV (Buerhop-Lutz, Deitsch et al.) is licensed CC BY-NC-SA 4.0, non-commercial only, so it is never
copied into this repository; it comes from the `elpv-dataset` package and is written to a cache folder.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..paths import headstart_home

DEFECT_THRESHOLD = 0.5
# Hidden, so that scanning the folder as a user's data set neither counts nor skips it.
ABOUT_FILE = ".about-elpv.txt"

README = """\
ELPV solar cell images, written by headstart for fine-tuning.

Source: the elpv-dataset Python package (https://github.com/zae-bayern/elpv-dataset).
  Buerhop-Lutz, Deitsch et al., "A Benchmark for Visual Identification of Defective
  Solar Cells in Electroluminescence Imagery", EU PVSEC 2018; Deitsch et al.,
  "Automatic classification of defective photovoltaic module cells in electroluminescence
  images", Solar Energy 185, 2019.
Licence: CC BY-NC-SA 4.0 (Creative Commons Attribution-NonCommercial-ShareAlike 4.0).
  NON-COMMERCIAL USE ONLY. Do not redistribute these images under other terms.
Label rule: defective = defect probability >= {threshold}, functional otherwise.
Files: <class>/cell_<index>.png, where <index> is the image's row in the package's labels.csv.
Subset: {subset}
Counts: {counts}
"""


def default_data_home() -> Path:
    """$HEADSTART_HOME/datasets if HEADSTART_HOME is set, else ~/.cache/headstart/datasets."""
    return headstart_home() / "datasets"


def materialise_elpv(root: Path | None = None, per_class: int | None = None, seed: int = 0) -> Path:
    """Write ELPV as <root>/elpv[-<per_class>]/{defective,functional}/cell_<index:04d>.png and return
    that folder. `per_class` keeps a seeded random subset of that many images per class.

    Safe to call repeatedly and to interrupt: the folder is built under a hidden temporary name
    and renamed into place once complete (ABOUT_FILE last), so a folder with that file is whole.
    """
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    root = Path(root) if root is not None else default_data_home()
    name = "elpv" if per_class is None else f"elpv-{per_class}"
    final = root / name
    if (final / ABOUT_FILE).is_file():
        return final
    if final.exists():
        raise UserError(f"{final} exists but is not a complete ELPV copy (no {ABOUT_FILE}); remove it and retry")

    images, probabilities = load_elpv()
    chosen = choose_indices(probabilities, per_class, seed)
    root.mkdir(parents=True, exist_ok=True)
    # the leading '.' keeps a half-written copy out of folder scans
    temporary = root / f".{name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write_images(temporary, images, chosen)
        subset = "all images" if per_class is None else f"{per_class} per class, numpy seed {seed}"
        counts = ", ".join(f"{label} {len(indices)}" for label, indices in chosen.items())
        readme = README.format(threshold=DEFECT_THRESHOLD, subset=subset, counts=counts)
        (temporary / ABOUT_FILE).write_text(readme, encoding="utf-8")
        os.rename(temporary, final)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if (final / ABOUT_FILE).is_file():  # another process finished first
            return final
        raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def load_elpv() -> tuple[np.ndarray, np.ndarray]:
    """(images N x 300 x 300 uint8, defect probabilities N) from the elpv-dataset package."""
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        raise UserError("the default ELPV data set needs the elpv-dataset package: pip install elpv-dataset") from None
    images, probabilities, _types = load_dataset()
    return images, np.asarray(probabilities, dtype=np.float64)


def choose_indices(probabilities: np.ndarray, per_class: int | None, seed: int) -> dict[str, np.ndarray]:
    """{class: sorted image indices}; all of them, or a seeded random `per_class` of each."""
    defective = probabilities >= DEFECT_THRESHOLD
    by_class = {"defective": np.flatnonzero(defective), "functional": np.flatnonzero(~defective)}
    if per_class is None:
        return by_class
    rng = np.random.default_rng(seed)
    return {
        label: np.sort(rng.choice(indices, size=min(per_class, len(indices)), replace=False))
        for label, indices in by_class.items()
    }


def write_images(folder: Path, images: np.ndarray, chosen: dict[str, np.ndarray]) -> None:
    for label, indices in chosen.items():
        (folder / label).mkdir(parents=True)
        for index in indices:
            Image.fromarray(images[index]).save(folder / label / f"cell_{index:04d}.png")
