"""LoRA on vision transformers: a tiny Hugging Face ViT and a tiny timm ViT saved to disk, trained on
real ELPV cells (the text encoder's case is in test_text.py)."""

from __future__ import annotations

import json

import pytest
import torch

import headstart
from headstart.backbones import create_backbone


def tiny_hf_vit(folder):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return f"hf:{folder}"


def tiny_timm_vit(folder):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2
    )
    save_for_hf(model, folder, safe_serialization=True)
    return f"timm:local-dir:{folder}"


@pytest.mark.parametrize("make, targets", [(tiny_hf_vit, ["q_proj", "v_proj"]), (tiny_timm_vit, ["qkv"])])
def test_lora_on_a_vision_transformer_adapts_its_attention_and_nothing_else(make, targets, elpv, tmp_path):
    name = make(tmp_path / "vit")
    result = headstart.train(
        str(elpv),
        backbone=name,
        strategy="lora",
        epochs=2,
        lr=1e-2,
        batch_size=8,
        lora_merge=False,
        report=False,
        out=str(tmp_path / "run"),
    )
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["strategy"]["lora"]["targets"] == targets
    pretrained = create_backbone(name).body.state_dict()
    trained = result.model.body.state_dict()
    for key, value in trained.items():
        if "lora_" not in key:
            assert torch.equal(value, pretrained[key.replace(".base_layer", "")]), key
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())
    assert headstart.evaluate(result.run_dir)["test"]["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
