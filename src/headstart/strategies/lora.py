"""LoRA (Hu et al. 2021) through peft: trainable low-rank adapters beside a frozen body's attention
projections, W x + (alpha / r) B A x, with the pretrained W never changed.

The adapters are injected into the body's own modules (peft's inject_adapter_in_model, no wrapper
model), so the layer groups, checkpoints and resume work as for any run; the `lora` strategy
trains the head and the adapters' parameters only. At the end of a run the adapters are merged
into the weights they sit beside (a plain model, as fast as the original), or kept as they are
(`lora_merge=false`: the run's model then holds the base weights untouched plus the adapters).
"""

from __future__ import annotations

from torch import nn

from ..errors import UserError

# attention projections to adapt, by the name the last part of their module path has
DEFAULT_TARGETS = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("qkv",))


def default_targets(body: nn.Module) -> list[str]:
    """The attention projections LoRA adapts in this body: query and value (BERT family), q_proj and
    v_proj (ViT and DINOv2 in transformers 5), q_lin and v_lin (DistilBERT), qkv (timm's ViT)."""
    names = {name.rsplit(".", 1)[-1] for name, m in body.named_modules() if isinstance(m, nn.Linear)}
    for targets in DEFAULT_TARGETS:
        if set(targets) <= names:
            return list(targets)
    raise UserError(
        "lora needs attention layers to adapt, and this backbone has none that headstart knows "
        "(query/value, q_proj/v_proj, q_lin/v_lin, qkv); use a text encoder or a ViT, or name the layers with "
        "--set lora_targets=NAME,NAME"
    )


def add_adapters(body: nn.Module, rank: int, alpha: float, dropout: float, targets: list[str] | None) -> list[str]:
    """Inject LoRA adapters into `body` in place; returns the targets used."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = targets or default_targets(body)
    try:
        inject_adapter_in_model(
            LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets), body
        )
    except ValueError as e:  # no module matched
        raise UserError(f"lora: {str(e).splitlines()[0]}") from None
    return targets


def adapter_modules(module: nn.Module) -> nn.ModuleList:
    """Every adapter's trainable parts (lora_A, lora_B and their dropout), as one list of modules."""
    from peft.tuners.lora import LoraLayer

    parts = []
    for m in module.modules():
        if isinstance(m, LoraLayer):
            parts += [m.lora_A, m.lora_B, m.lora_dropout]
    return nn.ModuleList(parts)


def merge_adapters(module: nn.Module) -> int:
    """Fold every adapter into the weight it sits beside and put the plain layer back; returns how many."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoraLayer):
                child.merge()
                setattr(parent, name, child.get_base_layer())
                merged += 1
    return merged
