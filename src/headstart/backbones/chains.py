"""Shared helpers for cutting a pretrained network into a `GroupedBody` chain.

A group is always a real sub-module that owns the parameters it uses. Groups made of whole
sub-modules are plain `nn.Sequential`s. Where the network's own code must run a piece (a ViT's
position embedding, a timm model's `forward_head(x, pre_logits=True)`), the group is a `Part`: it
registers the pieces it owns and calls the network's code, holding the network itself unregistered.
`check_partition` then proves that every parameter and buffer of the network lands in exactly one
group, or in the pretrained classifier kept aside.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterable, Sequence

import torch
from torch import nn


class Part(nn.Module):
    """A group made of pieces of `owner`, run by `fn(owner, x)`.

    `members` maps a local name to a dotted path in `owner` (a sub-module, parameter or buffer):
    the Part registers those objects (the same objects, not copies) so that it owns them. `owner`
    is kept as a plain attribute, so its other parts are not registered here; `fn` must only use
    what this Part registers. `fn` should be a module-level function (or a partial of one) so the
    Part pickles.
    """

    def __init__(
        self, owner: nn.Module, members: dict[str, str], fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    ):
        super().__init__()
        object.__setattr__(self, "_owner", owner)  # not a sub-module: the owner holds every group
        self._fn = fn
        self._links: dict[str, tuple[nn.Module, str, str]] = {}
        for local, path in members.items():
            parent, attr = _resolve_parent(owner, path)
            if attr in parent._modules:
                module = parent._modules[attr]
                if module is not None:
                    self.add_module(local, module)
            elif attr in parent._parameters:
                param = parent._parameters[attr]
                if param is not None:
                    self.register_parameter(local, param)
                    self._links[local] = (parent, attr, "param")
            elif attr in parent._buffers:
                buf = parent._buffers[attr]
                if buf is not None:
                    persistent = attr not in parent._non_persistent_buffers_set
                    self.register_buffer(local, buf, persistent=persistent)
                    self._links[local] = (parent, attr, "buffer")
            else:
                raise AttributeError(f"{type(owner).__name__} has no sub-module, parameter or buffer {path!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(self._owner, x)

    def train(self, mode: bool = True) -> "Part":
        super().train(mode)
        self._owner.training = mode  # the owner's own code may read self.training (e.g. dropout)
        return self

    def _sync(self) -> None:
        # Parameters/buffers registered directly here are also attributes of a module inside the owner;
        # when .to()/.half()/load_state_dict(assign=True) replace the tensor objects, mirror that there.
        for local, (parent, attr, kind) in self._links.items():
            if kind == "param":
                parent._parameters[attr] = self._parameters[local]
            else:
                parent._buffers[attr] = self._buffers[local]

    def _apply(self, *args, **kwargs):
        out = super()._apply(*args, **kwargs)
        self._sync()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._sync()

    def extra_repr(self) -> str:
        fn = self._fn.func if isinstance(self._fn, functools.partial) else self._fn
        return f"runs {type(self._owner).__name__} code: {getattr(fn, '__name__', fn)}"


def _resolve_parent(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    *parents, attr = path.split(".")
    module = root
    for name in parents:
        module = getattr(module, name)
    return module, attr


def local_name(path: str) -> str:
    return path.replace(".", "_")


def members_of(paths: Iterable[str], root: nn.Module | None = None) -> dict[str, str]:
    """{local name: path} for the paths that exist (and are not None) in root (all of them if root is None)."""
    out = {}
    for path in paths:
        if root is not None:
            try:
                parent, attr = _resolve_parent(root, path)
            except AttributeError:
                continue
            if getattr(parent, attr, None) is None:
                continue
        out[local_name(path)] = path
    return out


def leftover_members(
    owner: nn.Module, taken: Sequence[nn.Module], skip: Sequence[nn.Module | None] = ()
) -> dict[str, str]:
    """Everything in `owner` (sub-modules, parameters, buffers) that no module in `taken` holds, leaving out `skip`.

    Whole sub-modules are returned where none of their descendants is taken or skipped; otherwise the
    walk goes inside them. Used to give a last group everything the network's head code needs except
    the classifier.
    """
    taken_modules = {id(m) for t in taken for m in t.modules()}
    taken_tensors = {id(p) for t in taken for p in t.parameters()} | {id(b) for t in taken for b in t.buffers()}
    skip_modules = {id(m) for s in skip if s is not None for m in s.modules()}
    out: dict[str, str] = {}

    def visit(module: nn.Module, prefix: str) -> None:
        for name, p in list(module._parameters.items()) + list(module._buffers.items()):
            if p is not None and id(p) not in taken_tensors:
                out[local_name(prefix + name)] = prefix + name
        for name, child in module._modules.items():
            if child is None or id(child) in taken_modules or id(child) in skip_modules:
                continue
            inside = {id(m) for m in child.modules()}
            if inside & taken_modules or inside & skip_modules:
                visit(child, prefix + name + ".")
            else:
                out[local_name(prefix + name)] = prefix + name

    visit(owner, "")
    return out


def check_partition(
    network: nn.Module, groups: dict[str, nn.Module], source_head: nn.Module | None, label: str
) -> None:
    """Every parameter and buffer of `network` is in exactly one group, or in the source head; nothing else is.

    A failure is a bug in headstart's cut of this architecture, not a user mistake.
    """
    seen: dict[int, str] = {}
    for gname, group in groups.items():
        for name, t in list(group.named_parameters(remove_duplicate=False)) + list(
            group.named_buffers(remove_duplicate=False)
        ):
            if id(t) in seen:
                raise RuntimeError(f"headstart bug cutting {label}: tensor {gname}.{name} is also in {seen[id(t)]}")
            seen[id(t)] = f"{gname}.{name}"
    head = set()
    if source_head is not None:
        head = {id(t) for t in list(source_head.parameters()) + list(source_head.buffers())}
    net_tensors = {id(t): n for n, t in list(network.named_parameters()) + list(network.named_buffers())}
    missing = [n for i, n in net_tensors.items() if i not in seen and i not in head]
    if missing:
        raise RuntimeError(f"headstart bug cutting {label}: no group holds {', '.join(missing[:5])}")
    foreign = [n for i, n in seen.items() if i not in net_tensors]
    if foreign:
        raise RuntimeError(
            f"headstart bug cutting {label}: groups hold tensors not in the network: {', '.join(foreign[:5])}"
        )


@torch.no_grad()
def output_reductions(modules: Sequence[nn.Module], probe_size: int = 64, in_chans: int = 3) -> list[int]:
    """Run a small zero image through `modules` in order (eval mode, no grad); the image/feature size ratio after each."""
    modes = [(m, m.training) for mod in modules for m in mod.modules()]
    try:
        for mod in modules:
            mod.eval()
        param = next((p for mod in modules for p in mod.parameters()), None)
        x = torch.zeros(
            1,
            in_chans,
            probe_size,
            probe_size,
            dtype=param.dtype if param is not None else torch.float32,
            device=param.device if param is not None else "cpu",
        )
        out = []
        for mod in modules:
            x = mod(x)
            out.append(max(1, round(probe_size / x.shape[-1])))
        return out
    finally:
        for m, mode in modes:
            m.training = mode


def split_by_reduction(modules: Sequence[nn.Module], reductions: Sequence[int]) -> list[list[nn.Module]]:
    """Consecutive modules with the same output reduction, as lists."""
    runs: list[list[nn.Module]] = []
    last = None
    for mod, r in zip(modules, reductions):
        if r != last:
            runs.append([])
            last = r
        runs[-1].append(mod)
    return runs


def stem_and_stages(
    prefix: list[nn.Module], blocks: Sequence[nn.Module], probe_size: int = 64, in_chans: int = 3
) -> dict[str, nn.Module]:
    """`prefix` (the stem) followed by `blocks`, grouped by resolution: modules up to stride 2 join the stem,
    then one group per further resolution: stage1 (/4), stage2 (/8), ..."""
    reductions = output_reductions(list(prefix) + list(blocks), probe_size, in_chans)[len(prefix) :]
    stem = list(prefix)
    rest_blocks, rest_red = [], []
    for b, r in zip(blocks, reductions):
        if r <= 2 and not rest_blocks:
            stem.append(b)
        else:
            rest_blocks.append(b)
            rest_red.append(r)
    groups: dict[str, nn.Module] = {"stem": nn.Sequential(*stem)}
    for i, run in enumerate(split_by_reduction(rest_blocks, rest_red), start=1):
        groups[f"stage{i}"] = nn.Sequential(*run)
    return groups


class SelectToken(nn.Module):
    """x[:, index] for (batch, tokens, width) sequences."""

    def __init__(self, index: int = 0):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


# ---- preprocessing helpers -------------------------------------------------------------------------

_INTERP_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def interpolation_name(value) -> str:
    """'bilinear' / 'bicubic' / 'nearest' / ... from a string, a PIL resampling code or enum, or a torchvision InterpolationMode."""
    if value is None:
        return "bilinear"
    if hasattr(value, "value") and isinstance(value.value, str):  # torchvision InterpolationMode
        value = value.value
    if isinstance(value, str):
        name = value.lower()
        if name.startswith("pil") or name == "nearest-exact":
            name = "nearest"
        return name if name in {"nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"} else "bilinear"
    try:
        return _INTERP_NAMES.get(int(value), "bilinear")  # PIL.Image.Resampling is an IntEnum
    except (TypeError, ValueError):
        return "bilinear"


def resize_for_crop(input_size: int, crop_pct: float | None) -> int:
    """timm's eval transform: resize the short side to floor(input / crop_pct), then centre-crop input."""
    if not crop_pct:
        return input_size
    return int(math.floor(input_size / crop_pct))


# ---- ImageNet class names --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard (synset-sorted) order: the first WordNet lemma of
    each synset, from timm's ImageNetInfo, or torchvision's category list if that is not available."""
    try:
        from timm.data import ImageNetInfo

        descriptions = ImageNetInfo("imagenet-1k").label_descriptions(detailed=False)
        names = [d.split(",")[0].strip() for d in descriptions]
        if len(names) == 1000:
            return names
    except Exception:  # noqa: BLE001 - any failure falls back to torchvision's list (same order)
        pass
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
