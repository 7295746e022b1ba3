"""What every backbone provides: a body cut into ordered layer groups, its preprocessing, its width."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """How the backbone's pretraining fed it images. Mean and std are on 0-1 pixel values."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int  # side of the square the body sees
    resize_size: int  # the eval transform resizes the short side to this, then centre-crops input_size
    interpolation: str = "bilinear"

    @property
    def crop_pct(self) -> float:
        return self.input_size / self.resize_size

    def at_size(self, input_size: int | None = None, crop_pct: float | None = None) -> "Preprocessing":
        """The same preprocessing at another input size and/or centre-crop share (1.0: no crop)."""
        input_size = input_size or self.input_size
        resize_size = round(input_size / (crop_pct or self.crop_pct))
        return Preprocessing(self.mean, self.std, input_size, resize_size, self.interpolation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(
            tuple(d["mean"]),
            tuple(d["std"]),
            int(d["input_size"]),
            int(d["resize_size"]),
            d.get("interpolation", "bilinear"),
        )


@dataclass(frozen=True)
class TextPreprocessing:
    """How a text backbone reads text: its tokenizer (kept beside the model), cut at max_length
    tokens, and how the token vectors become one vector (mean over tokens, or the first token)."""

    max_length: int
    pooling: str  # "mean" | "cls"
    kind: str = "text"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextPreprocessing":
        return cls(int(d["max_length"]), d["pooling"])


def preprocessing_from_dict(d: dict) -> "Preprocessing | TextPreprocessing":
    """What a run folder's config.json holds, for an image or a text backbone."""
    return TextPreprocessing.from_dict(d) if d.get("kind") == "text" else Preprocessing.from_dict(d)


IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


# Names the Classifier gives the layer groups it adds above the body: no body group may take them.
RESERVED_GROUP_NAMES = ("head", "adapters")

# Body groups that once had another name, {name: former name}. The last group of timm's and torchvision's
# EfficientNet/MobileNetV3 bodies (the 1x1 conv_head, lastconv in torchvision, and the pooling) used to be
# called "head", beside the Classifier's own head, so `--strategy head` trained it too. Weights saved then
# hold its tensors under `body.groups.head.`; they still load (GroupedBody._load_from_state_dict).
FORMER_GROUP_NAMES = {"conv_head": "head", "lastconv": "head"}


def check_group_names(names: Sequence[str], label: str = "a backbone") -> None:
    """Layer group names are unique, non-empty, dot-free, and none is reserved for the Classifier's own
    groups. A failure is a bug in headstart's cut of an architecture, not a user mistake."""
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name or "." in name:
            raise RuntimeError(f"headstart bug cutting {label}: layer group name {name!r} is not a plain name")
        if name in RESERVED_GROUP_NAMES:
            raise RuntimeError(
                f"headstart bug cutting {label}: its body has a layer group named {name!r}, a name "
                f"reserved for the classifier's own groups ({', '.join(RESERVED_GROUP_NAMES)}); "
                f"groups: {', '.join(names)}"
            )
        if name in seen:
            raise RuntimeError(
                f"headstart bug cutting {label}: two layer groups are named {name!r}; groups: {', '.join(names)}"
            )
        seen.add(name)


class GroupedBody(nn.Module):
    """A body as an ordered list of layer groups, input to output.

    Running the groups one after the other gives the pooled feature vector, shape (batch, width).
    Because the body is a plain chain, a prefix of groups can be run (or cached) on its own:
    `body(x) == body.run(body.run(x, 0, k), k)`.

    `groups` is a mapping or a sequence of (name, module) pairs; the names must pass check_group_names.
    """

    def __init__(self, groups: Mapping[str, nn.Module] | Iterable[tuple[str, nn.Module]], label: str = "a backbone"):
        super().__init__()
        pairs = list(groups.items()) if isinstance(groups, Mapping) else list(groups)
        check_group_names([name for name, _ in pairs], label)
        self.groups = nn.ModuleDict(pairs)

    @property
    def group_names(self) -> list[str]:
        return list(self.groups.keys())

    def run(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        for module in list(self.groups.values())[start:end]:
            x = module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a group's tensors saved under its former name (FORMER_GROUP_NAMES) load into it; the parameter
        # names inside the group are unchanged. Runs before the groups themselves load.
        for name in self.groups:
            former = FORMER_GROUP_NAMES.get(name)
            if former is None:
                continue
            old, new = f"{prefix}groups.{former}.", f"{prefix}groups.{name}."
            if any(k.startswith(new) for k in state_dict):
                continue
            for key in [k for k in state_dict if k.startswith(old)]:
                state_dict[new + key[len(old) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@dataclass
class Backbone:
    """A built backbone: the body, and what is known about it."""

    name: str
    body: GroupedBody
    width: int  # length of the pooled feature vector the head receives
    preprocessing: Preprocessing | TextPreprocessing
    pretrained: bool
    weights_source: str  # where the weights came from, in words (package, hub id, file, "random")
    source_head: nn.Linear | None = None  # the pretraining classifier, kept aside (never trained)
    source_classes: list[str] | None = None  # names of the source head's classes, when known
    arch_config: dict = field(default_factory=dict)  # what a run folder needs to rebuild it offline
    tokenizer: object | None = None  # a text backbone's transformers tokenizer

    @property
    def modality(self) -> str:
        return "text" if isinstance(self.preprocessing, TextPreprocessing) else "image"


@dataclass(frozen=True)
class BackboneSpec:
    """A registry entry: how to build a backbone, and what to say about it before building it."""

    name: str
    description: str
    offline: bool  # usable with no network (weights ship in an installed package)
    params_millions: float | None
    build: Callable[..., Backbone]  # build(pretrained: bool = True, arch_config: dict | None = None)
    package: str | None = None  # the pip package that carries the weights, if any
