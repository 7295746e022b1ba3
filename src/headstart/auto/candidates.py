"""The candidates a time budget is spent on: backbones, and for small images a smaller input side.

Without a network only the backbones whose weights ship in an installed package can be probed; a
user who names backbones (`--backbone a,b`) probes those alone (at one or more sides for images).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from ..backbones.create import get_spec

# the offline backbones, cheapest first: probing stops when its share of the budget is spent
IMAGE_BACKBONES = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TEXT_BACKBONES = ("minilm-l6",)
# images whose median short side is at most this many pixels are also probed at SMALL_SIDE: upscaled to
# 224 px, 28 px digits cost four times the compute of 112 px for the same pixels
SMALL_IMAGES = 64
SMALL_SIDE = 112


@dataclass(frozen=True)
class Candidate:
    backbone: str
    image_size: int | None = None  # None: the backbone's own input side (texts: always None)

    @property
    def name(self) -> str:
        return f"{self.backbone} at {self.image_size} px" if self.image_size else self.backbone


def installed(backbone: str) -> bool:
    """Whether the backbone's weights package is installed (a hub backbone: assumed reachable)."""
    package = get_spec(backbone).package
    if package is None:
        return True
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def named(backbone: str | None) -> list[str]:
    """The backbones a user named, in their order, each once: "a,b" names two; None or "" none."""
    return list(dict.fromkeys(name.strip() for name in (backbone or "").split(",") if name.strip()))


def default_candidate(kind: str, backbone: str | None = None, image_size: int | None = None) -> Candidate:
    """The candidate the fixed recipe trains (the first backbone the user named, and the side named): the one the
    kind's defaults were measured on, which another candidate has to beat beyond the noise (plan.py)."""
    return Candidate((named(backbone) or (IMAGE_BACKBONES if kind == "image" else TEXT_BACKBONES))[0], image_size)


def candidates_for(
    kind: str, survey: dict, backbone: str | None = None, image_size: int | None = None
) -> list[Candidate]:
    """What to probe for data of `kind` that looks like `survey` (data/survey.py); `backbone` (one name, or
    several separated by commas) and `image_size`: the user's, when named."""
    names = named(backbone) or [b for b in (IMAGE_BACKBONES if kind == "image" else TEXT_BACKBONES) if installed(b)]
    if kind != "image":
        return [Candidate(b) for b in names]
    small = survey.get("median_short_side", SMALL_IMAGES + 1) <= SMALL_IMAGES
    sizes = [image_size] if image_size else [SMALL_SIDE, None] if small else [None]
    return [Candidate(b, size) for b in names for size in sizes]
