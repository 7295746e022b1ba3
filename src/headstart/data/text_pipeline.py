"""From texts to batches: tokenized once with the backbone's own tokenizer, padded per batch."""

from __future__ import annotations

import torch

from ..backbones import TextPreprocessing
from ..backbones.text_encoders import Tokens
from .pipeline import Feed


def tokenize_texts(
    texts: dict[str, str], tokenizer, max_length: int, chunk: int = 1000
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Token ids (int64, special tokens included, cut at max_length) per text, and the names of the
    texts that were longer and lost their end."""
    names = list(texts)
    tokens, truncated = {}, []
    for start in range(0, len(names), chunk):
        part = names[start : start + chunk]
        batch = [texts[n] for n in part]
        full = tokenizer(batch, truncation=False, verbose=False)["input_ids"]
        long = [name for name, ids in zip(part, full) if len(ids) > max_length]
        # the long ones again, cut by the tokenizer itself (it knows which special tokens to keep)
        cut = (
            dict(zip(long, tokenizer([texts[n] for n in long], truncation=True, max_length=max_length)["input_ids"]))
            if long
            else {}
        )
        for name, ids in zip(part, full):
            tokens[name] = torch.tensor(cut.get(name, ids), dtype=torch.long)
        truncated += long
    return tokens, truncated


class PadCollate:
    """A batch of (token ids, label) -> (Tokens padded to the longest, labels)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[tuple[torch.Tensor, int]]) -> tuple[Tokens, torch.Tensor]:
        longest = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, (sample, _) in enumerate(batch):
            ids[row, : len(sample)] = sample
            mask[row, : len(sample)] = 1
        return Tokens(ids, mask), torch.tensor([label for _, label in batch])


def unchanged(x):
    return x


def text_feed(
    tokens: dict[str, torch.Tensor], tokenizer, prep: TextPreprocessing, texts: dict[str, str] | None = None
) -> Feed:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    example = Tokens(torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long))
    return Feed(
        tokens,
        unchanged,
        unchanged,
        torch.nn.Identity(),
        example,
        collate=PadCollate(pad_id),
        lengths={name: len(ids) for name, ids in tokens.items()},
        description={"preprocessing": prep.to_dict(), "train": "tokens", "eval": "tokens", "pad_id": pad_id},
        texts=texts,
    )
