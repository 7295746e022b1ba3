"""The candidates a time budget is spent on: backbones, and for small images a smaller input side.

The backbones whose weights ship in an installed package are always candidates; when the Hugging Face
Hub answers, a short curated list of hub backbones joins them. A user who names backbones
(`--backbone a,b`) probes those alone (at one or more sides for images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

from ..backbones.create import get_spec

# the offline backbones, cheapest first: probing stops when its share of the budget is spent
IMAGE_BACKBONES = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TEXT_BACKBONES = ("minilm-l6",)
# with a network the search also probes these, cheapest first, right after the default: stronger bodies than
# the offline ones at a cost a CPU's ten minutes can still fine-tune (compute at 224 px, torch's FLOP counter:
# mobilenet_v2 0.30 GMACs, MobileNetV4-medium 0.83, ConvNeXt-nano 2.44; the texts' two are 12 layers of 384
# against minilm-l6's 6, the second in about 100 languages). The suite's machines have no network, so these
# were not measured on it; like every candidate they must probe better than the default beyond the noise.
# Left out: DINOv2-small and ViT-S (about 6 GMACs: on two CPU cores an epoch of ELPV would take most of the
# budget): name them with --backbone on a GPU
HUB_IMAGE_BACKBONES = ("timm:mobilenetv4_conv_medium.e500_r224_in1k", "timm:convnext_nano.in12k_ft_in1k")
HUB_TEXT_BACKBONES = ("hf:BAAI/bge-small-en-v1.5", "hf:intfloat/multilingual-e5-small")
# images whose median short side is at most this many pixels are also probed at SMALL_SIDE: upscaled to
# 224 px, 28 px digits cost four times the compute of 112 px for the same pixels
SMALL_IMAGES = 64
SMALL_SIDE = 112


@dataclass(frozen=True)
class Candidate:
    backbone: str
    image_size: int | None = None  # None: the backbone's own input side (texts: always None)
    from_hub: bool = False  # one of the curated hub backbones: a failed download skips it rather than the search

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


def hub_backbones(kind: str, unreachable: str | None) -> tuple[list[str], list[dict]]:
    """The curated hub backbones for `kind` when the Hub answers (`unreachable` None), else none; and those
    left out, each with why (`unreachable`: why the Hub cannot be reached)."""
    curated = list(HUB_IMAGE_BACKBONES if kind == "image" else HUB_TEXT_BACKBONES)
    if unreachable is None:
        return curated, []
    return [], [{"candidate": name, "why": f"a hub backbone, and {unreachable}"} for name in curated]


def candidates_for(
    kind: str, survey: dict, backbone: str | None = None, image_size: int | None = None, hub: Sequence[str] = ()
) -> list[Candidate]:
    """What to probe for data of `kind` that looks like `survey` (data/survey.py); `backbone` (one name, or
    several separated by commas) and `image_size`: the user's, when named, else the offline backbones with
    `hub` (hub_backbones' ready ones) after the default."""
    offline = [b for b in (IMAGE_BACKBONES if kind == "image" else TEXT_BACKBONES) if installed(b)]
    names = named(backbone) or offline[:1] + list(hub) + offline[1:]
    sizes = [None]
    if kind == "image":
        small = survey.get("median_short_side", SMALL_IMAGES + 1) <= SMALL_IMAGES
        sizes = [image_size] if image_size else [SMALL_SIDE, None] if small else [None]
    return [Candidate(b, size, from_hub=not named(backbone) and b in hub) for b in names for size in sizes]
