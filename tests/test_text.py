"""Text backbones and text data: real MiniLM weights, real Rotten Tomatoes snippets, tiny sizes."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import headstart
from headstart.backbones import create_backbone
from headstart.backbones.text_encoders import Tokens, minilm_folder
from headstart.data.pipeline import EpochOrder
from headstart.data.rotten_tomatoes import load_reviews, materialise_rotten_tomatoes
from headstart.data.texts import load_text_data
from headstart.errors import UserError
from headstart.inference import load_run, predict

TINY = dict(backbone="minilm-l6", max_length=32, batch_size=16, val_fraction=0.2, test_fraction=0.25, report=False)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """40 fresh and 40 rotten Rotten Tomatoes snippets as a CSV with columns text,label."""
    return materialise_rotten_tomatoes(tmp_path_factory.mktemp("rt"), per_class=40, seed=0)


@pytest.fixture(scope="module")
def head_run(reviews, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "head"
    return headstart.train(str(reviews), strategy="head", epochs=2, lr=1e-2, out=str(out), **TINY)


def mean_pooled_reference(folder: str, texts: list[str]) -> tuple[torch.Tensor, dict]:
    """transformers' own model and tokenizer, pooled as sentence-transformers does (mean over real tokens)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = AutoModel.from_pretrained(folder).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (states * mask).sum(1) / mask.sum(1), batch


def test_minilm_body_gives_the_sentence_transformers_embedding_with_its_own_tokenizer():
    texts = ["A gripping, beautifully acted film.", "Dull.", "The plot wanders off and never comes back, sadly."]
    backbone = create_backbone("minilm-l6")
    assert backbone.body.group_names == ["embeddings"] + [f"layer{i}" for i in range(1, 7)] + ["pooler"]
    assert backbone.width == 384 and backbone.preprocessing.pooling == "mean"
    reference, batch = mean_pooled_reference(minilm_folder(), texts)
    ours = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(ours["input_ids"], batch["input_ids"])
    backbone.body.eval()
    with torch.no_grad():
        pooled = backbone.body(Tokens(ours["input_ids"], ours["attention_mask"]))
    assert torch.allclose(pooled, reference, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "electra"])
def test_hf_adapter_cuts_a_bert_family_encoder_saved_to_disk(model_type, tmp_path):
    """A tiny randomly initialised encoder of each family, saved and loaded back through `hf:<folder>`."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    size = (
        dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64)
        if model_type == "distilbert"
        else dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    )
    config = AutoConfig.for_model(model_type, vocab_size=1000, max_position_embeddings=64, **size)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(tmp_path)  # any tokenizer of small ids will do
    backbone = create_backbone(f"hf:{tmp_path}")
    assert backbone.modality == "text" and backbone.body.group_names[-1] == "pooler"
    assert len(backbone.body.group_names) == 4 and backbone.width == 32
    ids = torch.tensor([[1, 5, 7, 9], [1, 5, 0, 0]])
    mask = (ids != 0).long()
    backbone.body.eval()
    with torch.no_grad():
        cls = create_backbone(f"hf:{tmp_path}")
        cls.body.groups["pooler"].mode = "cls"
        reference = AutoModel.from_pretrained(tmp_path).eval()(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(cls.body.eval()(Tokens(ids, mask)), reference[:, 0], atol=1e-5)


def test_hf_hub_id_without_network_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not download hf:some-org/some-bert"):
        create_backbone("hf:some-org/some-bert")


def write_tables(folder, rows):
    """The same rows as CSV, TSV, JSON lines and Parquet, and as a datasets folder."""
    import pandas as pd
    from datasets import Dataset

    paths = {}
    for name, delimiter in (("t.csv", ","), ("t.tsv", "\t")):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=delimiter)
            writer.writerow(["review", "sentiment"])
            writer.writerows(rows)
        paths[name] = folder / name
    (folder / "t.jsonl").write_text("".join(json.dumps({"review": t, "sentiment": s}) + "\n" for t, s in rows))
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_parquet(folder / "t.parquet")
    Dataset.from_dict({"review": [r[0] for r in rows], "sentiment": [r[1] for r in rows]}).save_to_disk(
        str(folder / "ds")
    )
    return [folder / "t.csv", folder / "t.tsv", folder / "t.jsonl", folder / "t.parquet", folder / "ds"]


def test_every_table_format_gives_the_same_texts_and_a_seeded_split(tmp_path):
    rows = load_reviews()[:30] + load_reviews()[-30:]
    found = []
    for path in write_tables(tmp_path, rows):
        splits, texts = load_text_data(path, "review", "sentiment", 0.2, 0.2, seed=3)
        assert not splits.skipped and len(splits.test) == 12 and len(splits.val) == 10
        assert {s.label for s in splits.test} == {"fresh", "rotten"}
        again, _ = load_text_data(path, "review", "sentiment", 0.2, 0.2, seed=3)
        assert again.test == splits.test  # the split is a function of the seed
        found.append(sorted((texts[s.path], s.label) for s in splits.all_samples()))
    assert all(f == sorted(rows) for f in found)


def test_bad_text_rows_are_named_and_skipped_and_bad_tables_are_one_line(tmp_path):
    table = tmp_path / "t.csv"
    table.write_bytes(
        b"text,label\ngood one,pos\n   ,pos\nno label,\nbad \xff byte,neg\nfine,neg\nalso fine,pos\nok,neg\n"
    )
    splits, texts = load_text_data(table, val_fraction=0.25, test_fraction=0, seed=0)
    reasons = dict(splits.skipped)
    assert reasons == {
        f"{table}:line 3": "empty text",
        f"{table}:line 4": "empty label",
        f"{table}:line 5": "not UTF-8 text (byte 0xff); save the file as UTF-8",
    }
    assert len(texts) == 4
    with pytest.raises(
        UserError, match=r"has no 'review' column \(columns: 'text', 'label'\); name yours with --set text_column"
    ):
        load_text_data(table, text_column="review")
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\na,x\nb,x\nc,x\n")
    with pytest.raises(UserError, match="only one class 'x'"):
        load_text_data(one_class)


def test_length_bucketed_order_visits_every_text_once_in_batches_of_similar_length():
    torch.manual_seed(0)
    lengths = torch.randint(3, 200, (1000,)).tolist()
    order = EpochOrder(1000, lengths, batch_size=16)
    order.plan()
    indices = [i for i, _ in order.keys]
    assert sorted(indices) == list(range(1000))
    batches = [indices[b : b + 16] for b in range(0, 1000, 16)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 15  # random batches of 16 from 3..199 would span about 170 tokens
    first = indices[:16]
    order.plan()
    assert [i for i, _ in order.keys][:16] != first  # a new shuffle every epoch


def test_head_run_on_texts_trains_from_the_feature_cache_and_leaves_the_body_unchanged(head_run):
    pretrained = create_backbone("minilm-l6").body.state_dict()
    body = head_run.model.body.state_dict()
    assert all(torch.equal(body[k], pretrained[k]) for k in pretrained)
    assert all(h["cached_groups"] == 8 for h in head_run.metrics["history"])
    assert head_run.metrics["history"][-1]["train_loss"] < head_run.metrics["history"][0]["train_loss"]
    record = json.loads((head_run.run_dir / "config.json").read_text())
    assert record["preprocessing"] == {"max_length": 32, "pooling": "mean", "kind": "text"}
    assert record["config"]["epochs"] == 2 and record["config"]["frozen_groups"] == 0  # the text defaults


def test_a_text_run_reloads_offline_and_predicts_what_it_reported(head_run):
    run = load_run(head_run.run_dir)
    assert run.modality == "text"
    metrics = headstart.evaluate(head_run.run_dir)
    assert metrics["test"]["accuracy"] == pytest.approx(head_run.metrics["test"]["accuracy"])
    assert metrics["test"]["confusion_matrix"] == head_run.metrics["test"]["confusion_matrix"]
    predictions, skipped = predict(head_run.run_dir, ["An utter triumph, moving and funny.", "  "], top_k=1)
    assert skipped == [("text 2", "empty text")] and predictions[0]["path"] == "text 1"
    assert predictions[0]["top"][0]["label"] in run.classes


@pytest.mark.slow
def test_gradual_on_texts_unfreezes_encoder_layers_top_down_and_skips_the_parameterless_pooler(reviews, tmp_path):
    result = headstart.train(str(reviews), strategy="gradual", epochs=3, out=str(tmp_path / "g"), **TINY)
    stages = json.loads((result.run_dir / "config.json").read_text())["strategy"]["stages"]
    assert [sorted(s["lrs"]) for s in stages][:2] == [["head"], ["head", "layer3", "layer4", "layer5", "layer6"]]
    assert all("pooler" not in s["lrs"] for s in stages)
    assert "embeddings" in stages[-1]["lrs"]


@pytest.mark.slow
def test_lora_trains_adapters_and_head_only_and_leaves_the_base_weights_bit_for_bit(reviews, tmp_path):
    kept = headstart.train(
        str(reviews), strategy="lora", epochs=2, lr=5e-3, lora_merge=False, out=str(tmp_path / "kept"), **TINY
    )
    pretrained = create_backbone("minilm-l6").body.state_dict()
    trained = kept.model.body.state_dict()
    base = {k: v for k, v in trained.items() if "lora_" not in k}
    assert len(base) == len(pretrained)
    for key, value in base.items():  # peft names a wrapped layer's own weight ...base_layer.weight
        assert torch.equal(value, pretrained[key.replace(".base_layer", "")]), key
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it trained
    history = kept.metrics["history"]
    total = sum(p.numel() for p in kept.model.parameters())
    assert history[0]["trainable_params"] < 0.02 * total and history[0]["cached_groups"] == 0
    record = json.loads((kept.run_dir / "config.json").read_text())
    assert record["strategy"]["lora"]["targets"] == ["query", "value"]
    # the kept adapters reload; a merged run's model is a plain model that predicts the same
    merged = headstart.train(str(reviews), strategy="lora", epochs=2, lr=5e-3, out=str(tmp_path / "merged"), **TINY)
    assert not any("lora_" in k for k in merged.model.state_dict())
    assert headstart.evaluate(kept.run_dir)["test"]["accuracy"] == pytest.approx(kept.metrics["test"]["accuracy"])
    assert headstart.evaluate(merged.run_dir)["test"]["confusion_matrix"] == kept.metrics["test"]["confusion_matrix"]


def test_lora_on_a_backbone_without_attention_is_one_line(elpv, tmp_path):
    with pytest.raises(UserError, match="lora needs attention layers"):
        headstart.train(str(elpv), strategy="lora", epochs=1, image_size=32, out=str(tmp_path / "r"))


def test_text_mistakes_on_the_command_line_are_one_line(reviews, head_run, tmp_path):
    from helpers import assert_one_line_error, run_cli

    def cli(*args):
        return assert_one_line_error(run_cli(*args))

    assert "no 'body' column" in cli("train", reviews, "--backbone", "minilm-l6", "--set", "text_column=body")
    assert "unlabeled text not found" in cli("adapt", tmp_path / "missing.txt")
    ok = run_cli("predict", head_run.run_dir, "a fine film", "--format", "json")
    assert ok.returncode == 0 and json.loads(ok.stdout)[0]["path"] == "text 1"


def test_a_table_of_texts_trains_the_text_backbone_when_none_is_named(reviews, tmp_path):
    settings = {k: v for k, v in TINY.items() if k != "backbone"}
    result = headstart.train(str(reviews), strategy="head", epochs=1, out=str(tmp_path / "auto"), **settings)
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["config"]["backbone"] == "minilm-l6" and record["survey"]["median_words"] > 0


def test_what_counts_as_a_table_of_texts(reviews, elpv, tmp_path):
    from headstart.data.texts import is_text_table

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,text\na.png,x,a caption\n")
    (tmp_path / "rows.jsonl").write_text('{"text": "a", "label": "x"}\n')
    assert is_text_table(reviews) and is_text_table(tmp_path / "rows.jsonl")
    assert not is_text_table(manifest) and not is_text_table(elpv)


def test_an_epochs_padded_tokens_are_what_the_runs_own_loaders_compute(reviews):
    # plan_epochs scales a timed rate per token to an epoch: the count must be the loaders' own, bucketed
    # training batches (here all in one pool) and validation batches in order
    from headstart.config import TrainConfig
    from headstart.data.kinds import KINDS
    from headstart.training.setup import epoch_tokens, make_loaders

    config = TrainConfig(data=str(reviews), **{**TINY, "max_length": 64})
    kind = KINDS["text"]
    backbone = create_backbone("minilm-l6")
    splits, feed = kind.load(config, backbone, kind.preprocessing(backbone, config), lambda *a: None)
    train_loader, order, eval_loaders = make_loaders(splits, feed, config, workers=0)
    order.plan()
    train_tokens = sum(tokens.ids.numel() for tokens, _ in train_loader)
    val_tokens = sum(tokens.ids.numel() for tokens, _ in eval_loaders["val"])
    assert epoch_tokens(splits, feed, config) == (train_tokens, val_tokens)
    unbucketed = feed.padded_tokens(splits.train, config.batch_size, bucketed=False)
    assert train_tokens < unbucketed  # bucketing pads less: timed unbucketed batches overstate an epoch
