"""What the server does with its model's kind of input, one object per kind of run (SERVED): how an
Input becomes the model's input, how inputs waiting together are cut into forward passes and
batched, and what /health says about the input.

Images: decoded and transformed as `headstart predict` does; every waiting image in one pass.
Texts: tokenized with the run's tokenizer and cut at max_length as `headstart predict` does; the
waiting texts are sorted by length and cut into passes whose padding stays small (`length_groups`);
a run with a word blend adds each text's word scores (evaluation/word_blend.py), as `headstart predict`
does.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import torch

from ..data.text_pipeline import PadCollate, tokenize_texts
from ..errors import BadImage
from ..inference import LoadedRun
from .requests import Input, RequestError

MAX_TEXT_CHARS = 100_000  # a longer text is refused: the model reads only its first max_length tokens anyway
MAX_PADDING = 0.25  # a text pass pads at most this fraction of its real tokens


class ImageInputs:
    name = "image"
    model = "an image model"
    usage = "send an image as the form field 'file', or its bytes as the body (image/*)"

    def prepare(self, run: LoadedRun, item: Input) -> list[torch.Tensor]:
        """The uint8 eval input of the image; 400 with the reason when it is not a usable image."""
        try:
            return [run.prepare(item.data, item.name)]
        except BadImage as e:
            raise RequestError(400, str(e)) from None

    def passes(self, inputs: list[torch.Tensor]) -> list[list[int]]:
        return [list(range(len(inputs)))]

    def collate(self, run: LoadedRun, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def probabilities(self, run: LoadedRun, batch: torch.Tensor, prepare) -> torch.Tensor:
        return run.forward(batch, prepare=prepare).softmax(1)

    def describe(self, run: LoadedRun) -> dict:
        return {"input_size": run.preprocessing.input_size}


class TextInputs:
    name = "text"
    model = "a text model"
    usage = 'send JSON {"text": "..."} or {"texts": [...]}, the form field \'text\', or text/plain'

    def __init__(self):
        # requests are prepared on several threads, and a fast tokenizer keeps its truncation setting
        # in itself, set per call: another thread's call can switch it off between one call's setting
        # and its encoding, and a long text comes back uncut (measured: 93 of 2,000). One call at a time
        self.tokenizing = threading.Lock()

    def prepare(self, run: LoadedRun, item: Input) -> list["PreparedText"]:
        """Each text's token ids, cut at max_length, and its word scores when the run blends them in (else
        None); 400 for an empty text or one over MAX_TEXT_CHARS."""
        for i, text in enumerate(item.data):
            where = f'"texts"[{i}]' if item.many else "the text"
            if not text.strip():
                raise RequestError(400, f"{where} is empty")
            if len(text) > MAX_TEXT_CHARS:
                raise RequestError(
                    400, f"{where} is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,} characters"
                )
        names = [str(i) for i in range(len(item.data))]
        with self.tokenizing:
            tokens, _ = tokenize_texts(dict(zip(names, item.data)), run.tokenizer, run.preprocessing.max_length)
        words = run.words.scores(item.data) if run.words is not None else [None] * len(names)
        return [PreparedText(tokens[n], w) for n, w in zip(names, words)]

    def passes(self, inputs: list["PreparedText"]) -> list[list[int]]:
        return length_groups([len(x.ids) for x in inputs], MAX_PADDING)

    def collate(self, run: LoadedRun, inputs: list["PreparedText"]) -> tuple:
        """Tokens padded to the longest, as `headstart predict` pads a batch, and the texts' word scores (or None)."""
        pad_id = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
        tokens, _ = PadCollate(pad_id)([(x.ids, 0) for x in inputs])
        return tokens, torch.stack([x.words for x in inputs]) if run.words is not None else None

    def probabilities(self, run: LoadedRun, batch: tuple, prepare) -> torch.Tensor:
        tokens, words = batch
        logits = run.forward(tokens, prepare=prepare)
        return (run.words.add(logits, words) if words is not None else logits).softmax(1)

    def describe(self, run: LoadedRun) -> dict:
        blend = {"word_blend_weight": run.words.weight} if run.words is not None else {}
        return {"max_length": run.preprocessing.max_length, "max_text_chars": MAX_TEXT_CHARS, **blend}


class PreparedText(NamedTuple):
    ids: torch.Tensor  # token ids, cut at max_length
    words: torch.Tensor | None  # the text's word scores, for a run with a word blend


def length_groups(lengths: list[int], max_padding: float) -> list[list[int]]:
    """Indices of inputs of these lengths in groups, each padded to its longest: sorted by length, a
    group takes the next input while its padding stays within max_padding of its real tokens."""
    groups: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = len(groups[-1]) + 1 if groups else 0
        if groups and n * lengths[i] <= (1 + max_padding) * (real + lengths[i]):
            groups[-1].append(i)
            real += lengths[i]
        else:
            groups.append([i])
            real = lengths[i]
    return groups


SERVED = {"image": ImageInputs(), "text": TextInputs()}  # a run's kind name -> how its inputs are served
