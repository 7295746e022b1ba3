"""`head_init=source`: the new head's rows for classes that the pretraining head also knew start
from that head's rows (the d2l fine-tuning chapter, exercise 4), the other rows stay Xavier.

A target class matches a source class by name, ignoring case, underscores and hyphens: the
backbone's own class names (for ImageNet-1k: torchvision's or timm's), any WordNet synonym of an
ImageNet-1k class (timm ships the lemma list: "tabby, tabby cat"), or its synset id ("n02123045").
A name that fits two source classes ("crane": the bird and the machine) is ambiguous and left alone.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .backbones import Backbone
from .errors import UserError


def normalise(name: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", name).casefold().split())


def imagenet_1k_names() -> tuple[list[str], list[list[str]]]:
    """timm's ImageNet-1k synset ids, in class-index order, and each class's WordNet lemmas."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return info.label_names(), [d.split(", ") for d in info.label_descriptions()]


def source_class_index(source_classes: list[str]) -> dict[str, tuple[int | None, str]]:
    """Normalised name -> (source class index, how it matched); index None where ambiguous.
    The backbone's own names win over synonyms."""
    table: dict[str, tuple[int | None, str]] = {}

    def add(names_per_class, how: str) -> None:
        found: dict[str, set[int]] = {}
        for index, names in enumerate(names_per_class):
            for name in names:
                found.setdefault(normalise(name), set()).add(index)
        for name, indices in found.items():
            if name not in table:
                table[name] = (next(iter(indices)) if len(indices) == 1 else None, how)

    add([[c] for c in source_classes], "name")
    if len(source_classes) == 1000:  # ImageNet-1k, in the standard (sorted synset id) order
        synsets, lemmas = imagenet_1k_names()
        add([[s] for s in synsets], "synset")
        add(lemmas, "synonym")
    return table


def match_source_classes(classes: list[str], source_classes: list[str]) -> list[dict]:
    """For each target class: the source class it starts from, or why none."""
    table = source_class_index(source_classes)
    rows = []
    for row, name in enumerate(classes):
        index, how = table.get(normalise(name), (None, "no match"))
        if how != "no match" and index is None:
            how = "ambiguous"
        rows.append(
            {
                "class": name,
                "row": row,
                "source_index": index,
                "matched_by": how,
                "source_class": source_classes[index] if index is not None else None,
            }
        )
    return rows


def init_head(head: nn.Module, backbone: Backbone, classes: list[str], mode: str, log=print) -> list[dict] | None:
    """Apply `mode` to the new head (a module ending in nn.Linear); returns the matches for
    "source", None for "xavier" (the head is left as new_head made it)."""
    if mode == "xavier":
        return None
    source = backbone.source_head
    linear = head[-1] if isinstance(head, nn.Sequential) else head
    if source is None or not backbone.source_classes:
        raise UserError(
            f"head_init=source needs a backbone that came with its pretraining head and class names; "
            f"{backbone.name} has none here: use head_init=xavier"
        )
    if source.in_features != linear.in_features:
        raise UserError(
            f"head_init=source: {backbone.name}'s pretraining head takes {source.in_features} features, "
            f"the new head {linear.in_features}; use head_init=xavier"
        )
    matches = match_source_classes(classes, backbone.source_classes)
    with torch.no_grad():
        for m in matches:
            if m["source_index"] is not None:
                linear.weight[m["row"]] = source.weight[m["source_index"]]
                linear.bias[m["row"]] = source.bias[m["source_index"]] if source.bias is not None else 0.0
    copied = [
        f"{m['class']} <- {m['source_class']} ({m['matched_by']})" for m in matches if m["source_index"] is not None
    ]
    if copied:
        rest = "; the rest Xavier" if len(copied) < len(classes) else ""
        log(f"head init: {len(copied)} of {len(classes)} rows from the source head: {'; '.join(copied)}{rest}")
    else:
        log(
            f"warning: head_init=source: no class name matches a class of {backbone.name}'s pretraining head; "
            f"every row stays Xavier"
        )
    return matches
