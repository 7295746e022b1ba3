"""`adapt(config)`: continue a text backbone's masked-language-model pretraining on unlabeled
in-domain text (domain-adaptive pretraining, DAPT; on the task's own training texts, TAPT:
Gururangan et al. 2020), and write a backbone folder that `train --backbone FOLDER` takes.

Masking is transformers' DataCollatorForLanguageModeling: 15% of the tokens are chosen; of those
80% become [MASK], 10% a random token, 10% stay (with whole-word masking, whole words are chosen
and always become [MASK], as that collator does). Perplexity is measured on held-out documents
before and after, on the same masked batches both times.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..backbones.text_encoders import quiet_transformers, text_model_source
from ..data.texts import load_text_data
from ..data.unlabeled import read_unlabeled
from ..errors import UserError
from ..files import rows_to_csv, write_json
from ..runtime.accelerator import make_accelerator
from ..runtime.environment import resolve_device, resolve_precision
from .optim import build_scheduler

ADAPT_RECORD = "adapt.json"


@dataclass
class AdaptConfig:
    data: str = ""  # unlabeled text (.txt, folder of .txt, table), or with tapt the labeled task table
    backbone: str = "minilm-l6"
    text_column: str = "text"
    tapt: bool = False  # data is the task's labeled table: adapt on its training split's texts only
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimiser steps (None: all epochs)
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.06
    batch_size: int = 32
    max_length: int = 128
    mlm_probability: float = 0.15
    whole_word: bool = False
    heldout_fraction: float = 0.05  # documents kept aside to measure perplexity
    # a checkpoint without its masked-LM head (sentence-transformers models) gets a new one; it first
    # trains alone for this many steps, the encoder frozen, so that the encoder's first updates do not
    # follow a random head's gradients, and "before" is the encoder's perplexity, not the random head's
    head_warmup_steps: int = 100
    head_warmup_lr: float = 1e-3
    seed: int = 0
    # the task split's settings, with tapt: the same as `train` uses, so no test text is adapted on
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    precision: str = "auto"
    device: str = "auto"
    out: str | None = None  # default runs/adapt-<time>-<backbone>


@dataclass
class AdaptResult:
    out: Path
    record: dict


def adapt_documents(config: AdaptConfig, log) -> tuple[list[str], list[tuple[str, str]], str]:
    """The documents to adapt on, what was skipped, and where they came from, in words."""
    if config.tapt:
        splits, texts = load_text_data(
            config.data, config.text_column, "label", config.val_fraction, config.test_fraction, config.seed
        )
        docs = [texts[s.path] for s in splits.train]
        return (
            docs,
            splits.skipped,
            f"the training split of {config.data} (TAPT: {len(docs)} texts; val and test left out)",
        )
    docs, skipped = read_unlabeled(config.data, config.text_column)
    return docs, skipped, f"{config.data} ({len(docs)} documents)"


@contextlib.contextmanager
def transformers_errors_only():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def masking_collator(tokenizer, probability: float = 0.15, whole_word: bool = False):
    """Pads a list of {"input_ids"} and masks it for the masked-LM loss (labels -100 where not masked)."""
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, whole_word_mask=whole_word)


def masked_batches(tokenized: list[list[int]], collator, batch_size: int, order: list[int]) -> list[dict]:
    return [
        collator([{"input_ids": tokenized[i]} for i in order[b : b + batch_size]])
        for b in range(0, len(order), batch_size)
    ]


def masked_lm_head(model):
    """The one module that maps hidden states to vocabulary logits (BERT's `cls`, RoBERTa's `lm_head`),
    or None where the head is several modules (DistilBERT, ELECTRA)."""
    heads = [module for name, module in model.named_children() if name != model.base_model_prefix]
    return heads[0] if len(heads) == 1 else None


def masked_lm_loss(model, batch: dict, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the masked tokens only. The vocabulary projection is as costly as the whole
    6-layer MiniLM encoder when run on every token, so where the head is one module it runs only at
    the masked positions (15% of them); the loss is the same as the model's own."""
    labels = batch["labels"]
    masked = labels != -100
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    head = masked_lm_head(model)
    if head is None:
        logits = model(**inputs).logits[masked]
    else:
        logits = head(model.base_model(**inputs).last_hidden_state[masked])
    if not masked.any():  # a batch of very short texts can have no masked token
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits.float(), labels[masked], reduction=reduction)


@torch.no_grad()
def perplexity(model, batches: list[dict], accelerator) -> float:
    """exp(mean cross-entropy over the masked tokens) of `batches`, masked once and reused."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            total += masked_lm_loss(model, batch, reduction="sum").item()
        count += int((batch["labels"] != -100).sum())
    return math.exp(total / max(1, count))


def adapt(config: AdaptConfig, log=print) -> AdaptResult:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    started = time.perf_counter()
    set_seed(config.seed)
    source = text_model_source(config.backbone)
    docs, skipped, described = adapt_documents(config, log)
    if len(docs) < 2:
        raise UserError(f"adapt needs at least 2 documents; {config.data} has {len(docs)}")
    for where, reason in skipped:
        log(f"warning: skipped {where}: {reason}")
    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(source)
    with transformers_errors_only():  # its load report of missing keys: said below in one line
        model, info = AutoModelForMaskedLM.from_pretrained(source, dtype=torch.float32, output_loading_info=True)
    new_head = sorted(k for k in info["missing_keys"] if not k.startswith(model.base_model_prefix + "."))
    if new_head:
        log(
            f"{config.backbone} came without its masked-LM head: a new one is initialised and trained "
            f"({', '.join(new_head[:3])}{', ...' if len(new_head) > 3 else ''})"
        )

    tokenized = tokenizer(docs, truncation=True, max_length=config.max_length)["input_ids"]
    order = torch.randperm(len(docs)).tolist()
    n_heldout = max(1, round(config.heldout_fraction * len(docs)))
    heldout, train = order[:n_heldout], order[n_heldout:]
    collator = masking_collator(tokenizer, config.mlm_probability, config.whole_word)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)  # the held-out masks, the same before and after
        heldout_batches = masked_batches(tokenized, collator, config.batch_size, heldout)

    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    accelerator = make_accelerator(device, precision, 1)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = min(config.max_steps or steps_per_epoch * config.epochs, steps_per_epoch * config.epochs)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    scheduler = build_scheduler(optimizer, total_steps, config.warmup, "cosine")
    model, optimizer = accelerator.prepare(model, optimizer)

    untrained_head = None
    if new_head and config.head_warmup_steps:
        untrained_head = perplexity(model, heldout_batches, accelerator)
        warm_up_new_head(accelerator.unwrap_model(model), tokenized, train, collator, config, accelerator)
        log(
            f"the new masked-LM head trained alone for {config.head_warmup_steps} steps (encoder frozen): held-out "
            f"perplexity {untrained_head:.1f} with the random head"
        )
    before = perplexity(model, heldout_batches, accelerator)
    log(
        f"adapt {config.backbone} on {described}: {len(train)} to train on, {n_heldout} held out; "
        f"held-out perplexity {before:.2f}"
    )
    out = Path(config.out) if config.out else default_adapt_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    step, history = 0, []
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_order = [train[i] for i in torch.randperm(len(train)).tolist()]
        bar = tqdm(
            range(0, len(epoch_order), config.batch_size),
            desc=f"adapt epoch {epoch}/{config.epochs}",
            leave=False,
            disable=None,
            dynamic_ncols=True,
        )
        losses = []
        for b in bar:
            batch = collator([{"input_ids": tokenized[i]} for i in epoch_order[b : b + config.batch_size]])
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                loss = masked_lm_loss(model, batch)
            if not torch.isfinite(loss):
                raise UserError(
                    f"the masked-LM loss became {loss.item()} at step {step + 1}; lower --lr (now {config.lr})"
                )
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
            if step >= total_steps:
                break
        after = perplexity(model, heldout_batches, accelerator)
        history.append(
            {"epoch": epoch, "steps": step, "train_loss": sum(losses) / len(losses), "heldout_perplexity": after}
        )
        log(f"adapt epoch {epoch}: train loss {history[-1]['train_loss']:.3f}, held-out perplexity {after:.2f}")
        save_backbone(accelerator.unwrap_model(model), tokenizer, source, out)  # a checkpoint after every epoch
        if step >= total_steps:
            break
    record = {
        "config": asdict(config),
        "source": str(source),
        "data": described,
        "documents": len(docs),
        "heldout_documents": n_heldout,
        "new_lm_head": new_head,
        "perplexity_untrained_head": untrained_head,
        "head_warmup_steps": config.head_warmup_steps if untrained_head is not None else 0,
        "steps": step,
        "history": history,
        "perplexity_before": before,
        "perplexity_after": history[-1]["heldout_perplexity"],
        "wall_seconds": time.perf_counter() - started,
    }
    write_json(out / ADAPT_RECORD, record)
    (out / "skipped.csv").write_text(rows_to_csv(["where", "reason"], skipped))
    log(
        f"held-out perplexity {before:.2f} -> {record['perplexity_after']:.2f}; adapted backbone: {out} "
        f"(train with --backbone {out})"
    )
    return AdaptResult(out, record)


def warm_up_new_head(
    model, tokenized: list[list[int]], train: list[int], collator, config: AdaptConfig, accelerator
) -> None:
    """Train only the masked-LM head (the parameters outside the base model) for head_warmup_steps."""
    prefix = model.base_model_prefix + "."
    head = [p for n, p in model.named_parameters() if not n.startswith(prefix)]
    frozen = [p for n, p in model.named_parameters() if n.startswith(prefix)]
    for p in frozen:
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(head, lr=config.head_warmup_lr, weight_decay=0.0)
    model.train()
    for _ in range(config.head_warmup_steps):
        chosen = [train[i] for i in torch.randint(len(train), (config.batch_size,)).tolist()]
        batch = {
            k: v.to(accelerator.device) for k, v in collator([{"input_ids": tokenized[i]} for i in chosen]).items()
        }
        with accelerator.autocast():
            loss = masked_lm_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for p in frozen:
        p.requires_grad_(True)


def save_backbone(model, tokenizer, source: str, out: Path) -> None:
    """The whole masked-LM model (so adapting can go on) and the tokenizer, as a transformers folder;
    a sentence-transformers pooling declaration is carried over, so `train` pools as the original did."""
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    pooling = Path(source) / "1_Pooling" / "config.json"
    if pooling.is_file():
        (out / "1_Pooling").mkdir(exist_ok=True)
        shutil.copyfile(pooling, out / "1_Pooling" / "config.json")


def default_adapt_dir(config: AdaptConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"adapt-{stamp}-{Path(config.backbone.replace(':', '-')).name}"


def adapt_config_from_dict(values: dict) -> AdaptConfig:
    known = set(AdaptConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown adapt setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    config = AdaptConfig(**values)
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0 or not 0 < config.mlm_probability < 1:
        raise UserError("adapt: epochs and batch size must be at least 1, lr above 0, mlm_probability between 0 and 1")
    return config
