"""Domain-adaptive pretraining: real MiniLM weights and tokenizer, real Rotten Tomatoes snippets, few steps."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import headstart
from headstart.backbones import create_backbone
from headstart.backbones.text_encoders import text_model_source
from headstart.data.rotten_tomatoes import load_reviews, materialise_rotten_tomatoes
from headstart.errors import UserError
from headstart.training.adapt import AdaptConfig, adapt, masked_lm_loss, masking_collator


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapt")
    corpus = folder / "reviews.txt"
    corpus.write_text("\n".join(text.replace("\n", " ") for text, _ in load_reviews()[:120]) + "\n\n")
    config = AdaptConfig(
        data=str(corpus),
        backbone="minilm-l6",
        max_steps=6,
        batch_size=16,
        max_length=48,
        lr=5e-4,
        heldout_fraction=0.2,
        head_warmup_steps=4,
        out=str(folder / "out"),
    )
    return adapt(config, log=lambda message: None)


def test_masking_chooses_15_percent_of_tokens_and_replaces_them_80_10_10():
    backbone = create_backbone("minilm-l6")
    tokenizer = backbone.tokenizer
    ids = tokenizer([t for t, _ in load_reviews()[:2000]], truncation=True, max_length=64)["input_ids"]
    torch.manual_seed(0)
    batch = masking_collator(tokenizer)([{"input_ids": i} for i in ids])
    original = torch.full_like(batch["input_ids"], tokenizer.pad_token_id)
    for row, i in enumerate(ids):
        original[row, : len(i)] = torch.tensor(i)
    special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
    chosen = batch["labels"] != -100
    assert not (chosen & special).any()
    assert torch.equal(batch["labels"][chosen], original[chosen])  # the labels are the original tokens
    share = chosen.sum().item() / (~special).sum().item()
    assert share == pytest.approx(0.15, abs=0.005)
    now = batch["input_ids"][chosen]
    masked = (now == tokenizer.mask_token_id).float().mean().item()
    kept = (now == original[chosen]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / tokenizer.vocab_size, abs=0.01)  # a random token can be the same one
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.01)


def test_the_masked_positions_only_loss_is_the_models_own_loss():
    from transformers import AutoModelForMaskedLM

    backbone = create_backbone("minilm-l6")
    model = AutoModelForMaskedLM.from_pretrained(text_model_source("minilm-l6"), dtype=torch.float32).eval()
    ids = backbone.tokenizer([t for t, _ in load_reviews()[:16]], truncation=True, max_length=48)["input_ids"]
    torch.manual_seed(0)
    batch = masking_collator(backbone.tokenizer)([{"input_ids": i} for i in ids])
    with torch.no_grad():
        assert masked_lm_loss(model, batch).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)


@pytest.mark.slow
def test_adapt_writes_a_backbone_folder_with_perplexity_before_and_after(adapted):
    record = json.loads((adapted.out / "adapt.json").read_text())
    assert record["steps"] == 6 and record["documents"] == 120 and record["heldout_documents"] == 24
    assert record["new_lm_head"]  # the sentence-transformers checkpoint has no masked-LM head
    # the new head trained alone first (encoder frozen), then the whole model: perplexity falls both times
    assert record["head_warmup_steps"] == 4
    assert record["perplexity_after"] < record["perplexity_before"] < record["perplexity_untrained_head"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        assert (adapted.out / name).is_file(), name


@pytest.mark.slow
def test_train_on_an_adapted_backbone_uses_its_weights_not_the_original(adapted, tmp_path):
    data = materialise_rotten_tomatoes(tmp_path, per_class=12)
    run = headstart.train(
        str(data),
        backbone=str(adapted.out),
        strategy="head",
        epochs=1,
        max_length=32,
        report=False,
        out=str(tmp_path / "run"),
    )
    body = run.model.body.state_dict()
    saved = load_file(str(adapted.out / "model.safetensors"))
    original = create_backbone("minilm-l6").body.state_dict()
    key = "groups.layer3.layer.attention.self.query.weight"
    assert torch.equal(body[key], saved["bert.encoder.layer.2.attention.self.query.weight"])
    assert not torch.equal(body[key], original[key])
    assert run.model.body.groups["pooler"].mode == "mean"  # carried over from the sentence-transformers folder


def test_adapt_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="unlabeled text not found"):
        adapt(AdaptConfig(data=str(tmp_path / "missing.txt")))
    (tmp_path / "one.txt").write_text("just one line\n")
    with pytest.raises(UserError, match="at least 2 documents"):
        adapt(AdaptConfig(data=str(tmp_path / "one.txt")))
    with pytest.raises(UserError, match="not a text backbone adapt can continue"):
        adapt(AdaptConfig(data=str(tmp_path / "one.txt"), backbone="mobilenet_v2"))
