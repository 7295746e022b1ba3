"""What differs between images and texts, in one object per kind of data.

Everything above the data layer (training, inference, audit) asks the kind of its backbone, and
never checks which kind it holds: the preprocessing it reads with, how its samples are listed,
split and decoded, and how decoded samples reach the model (a `Feed`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..backbones import Backbone, Preprocessing, TextPreprocessing
from ..backbones.text_encoders import with_text_options
from ..config import TrainConfig
from ..errors import UserError
from ..evaluation.reference import pixel_features
from .decoded_cache import decode_images_cached
from .images import decode_images
from .pipeline import Feed, image_feed
from .sources import DataSplits, list_images, load_image_data
from .survey import survey_images, survey_texts
from .table_stream import TextTable
from .text_pipeline import text_feed, tokenize_texts
from .texts import load_text_data

# A filter applied to the splits after they are made (the audit's exclusions): removes samples from
# them, records what it removed in splits.skipped and splits.notes
SplitsFilter = Callable[[DataSplits, Callable], None]


class ImageKind:
    name = "image"

    def check(self, config: TrainConfig) -> None:
        """Settings this kind refuses."""
        if config.word_blend:
            raise UserError("word_blend adds a text's TF-IDF word scores: it does not apply to images; leave it unset")

    def preprocessing(self, backbone: Backbone, config: TrainConfig) -> Preprocessing:
        """The backbone's preprocessing at the run's image size and crop."""
        return backbone.preprocessing.at_size(config.image_size, config.crop_pct)

    def describe_size(self, prep: Preprocessing) -> str:
        return f"{prep.input_size}px"

    def list_and_split(
        self, data: str, config: TrainConfig, val_fraction: float, test_fraction: float, seed: int
    ) -> DataSplits:
        return load_image_data(data, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)

    def list_items(self, config: TrainConfig) -> tuple[DataSplits, None]:
        """The run's splits, listed (nothing decoded yet); the None stands where texts have their texts."""
        splits = self.list_and_split(
            config.data, config, config.val_fraction, config.test_fraction, config.data_split_seed()
        )
        return splits, None

    def survey(self, listed: tuple[DataSplits, None]) -> dict:
        """What the run sees of its images before choosing its defaults (data/survey.py)."""
        return survey_images(listed[0])

    def load(
        self,
        config: TrainConfig,
        backbone: Backbone,
        prep: Preprocessing,
        log,
        exclude: SplitsFilter | None = None,
        listed: tuple[DataSplits, None] | None = None,
    ) -> tuple[DataSplits, Feed]:
        """List and split the images (unless `listed` already did), decode each once (what cannot be read
        is skipped and named), then leave out what `exclude` removes."""
        splits, _ = listed or self.list_items(config)
        paths = [s.path for s in splits.all_samples()]
        if config.decoded_cache:
            images, undecodable = decode_images_cached(paths, prep.resize_size, log=log)
        else:
            images, undecodable = decode_images(paths, prep.resize_size)
        splits.skipped.extend(undecodable)
        splits = drop_undecodable(splits, images)
        log_skipped(splits, log)
        if exclude is not None:
            exclude(splits, log)
        return splits, image_feed(
            images, prep, config.augment, config.crop_scale, config.hflip, config.vflip, config.quarter_turns
        )

    def read(
        self, data: str, config: TrainConfig, val_fraction: float, test_fraction: float, seed: int, prep: Preprocessing
    ) -> tuple[DataSplits, dict, list[tuple[str, str]]]:
        """(inference) The splits, every image decoded (no disk cache) by path, and what was skipped."""
        splits = self.list_and_split(data, config, val_fraction, test_fraction, seed)
        images, undecodable = decode_images([s.path for s in splits.all_samples()], prep.resize_size)
        return splits, images, [*splits.skipped, *undecodable]

    def prediction_inputs(
        self, inputs: list[str], prep: Preprocessing
    ) -> tuple[list[str], dict, list[tuple[str, str]]]:
        """(inference) Image files as given and folders searched recursively: their paths, the decoded
        images by path, and what was skipped (not an image, undecodable)."""
        paths, skipped = gather_images(inputs)
        images, undecodable = decode_images(paths, prep.resize_size)
        return paths, images, skipped + undecodable

    def feed(self, inputs: dict, prep: Preprocessing, tokenizer=None) -> Feed:
        """Decoded images made ready for the model, without augmentation (inference)."""
        return image_feed(inputs, prep)

    def table(self, path: str, text_column: str, chunk_rows: int) -> TextTable:
        raise UserError(f"{path}: predicting a table of texts needs a text run; give an image run files or folders")

    def reference_inputs(self, samples: list, feed: Feed):
        """What the cheap reference (evaluation/reference.py) fits on: the decoded images' pixels, downscaled."""
        return pixel_features([feed.inputs[s.path] for s in samples])


class TextKind:
    name = "text"

    def check(self, config: TrainConfig) -> None:
        if config.mixup:
            raise UserError("mixup blends pixels (or image features): it does not apply to texts; leave mixup at 0")

    def preprocessing(self, backbone: Backbone, config: TrainConfig) -> TextPreprocessing:
        """The backbone's own, with the run's max_length and pooling (set on the backbone itself)."""
        return with_text_options(backbone, config.max_length, config.pooling).preprocessing

    def describe_size(self, prep: TextPreprocessing) -> str:
        return f"{prep.max_length} tokens"

    def list_and_split(
        self, data: str, config: TrainConfig, val_fraction: float, test_fraction: float, seed: int
    ) -> tuple[DataSplits, dict[str, str]]:
        return load_text_data(data, config.text_column, config.label_column, val_fraction, test_fraction, seed)

    def list_items(self, config: TrainConfig) -> tuple[DataSplits, dict[str, str]]:
        """The run's splits and every text by name (nothing tokenized yet)."""
        return self.list_and_split(
            config.data, config, config.val_fraction, config.test_fraction, config.data_split_seed()
        )

    def survey(self, listed: tuple[DataSplits, dict[str, str]]) -> dict:
        """What the run sees of its texts before choosing its defaults (data/survey.py)."""
        return survey_texts(*listed)

    def load(
        self,
        config: TrainConfig,
        backbone: Backbone,
        prep: TextPreprocessing,
        log,
        exclude: SplitsFilter | None = None,
        listed: tuple[DataSplits, dict[str, str]] | None = None,
    ) -> tuple[DataSplits, Feed]:
        """Read and split the table (unless `listed` already did; rows that cannot be used are skipped and
        named), tokenize each text once with the backbone's tokenizer, then leave out what `exclude` removes."""
        splits, texts = listed or self.list_items(config)
        tokens, truncated = tokenize_texts(
            {s.path: texts[s.path] for s in splits.all_samples()}, backbone.tokenizer, prep.max_length
        )
        feed = text_feed(tokens, backbone.tokenizer, prep, texts)
        if truncated:
            splits.notes.append(
                f"{len(truncated)} of {len(tokens)} texts were longer than {prep.max_length} tokens and "
                f"were cut (max_length), e.g. {truncated[0]}"
            )
            log(f"warning: {splits.notes[-1]}")
        log_skipped(splits, log)
        if exclude is not None:
            exclude(splits, log)
        return splits, feed

    def read(
        self,
        data: str,
        config: TrainConfig,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        prep: TextPreprocessing,
    ) -> tuple[DataSplits, dict, list[tuple[str, str]]]:
        """(inference) The splits, every text by name, and the rows that were skipped."""
        splits, texts = self.list_and_split(data, config, val_fraction, test_fraction, seed)
        return splits, texts, list(splits.skipped)

    def prediction_inputs(
        self, inputs: list[str], prep: TextPreprocessing
    ) -> tuple[list[str], dict, list[tuple[str, str]]]:
        """(inference) The texts themselves, named "text N"; empty ones are skipped."""
        texts = {f"text {i + 1}": t for i, t in enumerate(inputs) if t.strip()}
        skipped = [(f"text {i + 1}", "empty text") for i, t in enumerate(inputs) if not t.strip()]
        return list(texts), texts, skipped

    def feed(self, inputs: dict[str, str], prep: TextPreprocessing, tokenizer=None) -> Feed:
        """Texts by name, tokenized here and made ready for the model (inference)."""
        tokens, _ = tokenize_texts(inputs, tokenizer, prep.max_length)
        return text_feed(tokens, tokenizer, prep)

    def table(self, path: str, text_column: str, chunk_rows: int) -> TextTable:
        """(inference) A table of texts to predict, read a chunk of rows at a time."""
        return TextTable(path, text_column, chunk_rows)

    def reference_inputs(self, samples: list, feed: Feed) -> list[str]:
        """What the cheap reference (evaluation/reference.py) fits on: the texts themselves."""
        return [feed.texts[s.path] for s in samples]


KINDS = {"image": ImageKind(), "text": TextKind()}


def kind_of(backbone_or_prep) -> ImageKind | TextKind:
    """The kind of data a backbone reads (by its modality), or a run's preprocessing describes."""
    if isinstance(backbone_or_prep, TextPreprocessing):
        return KINDS["text"]
    if isinstance(backbone_or_prep, Preprocessing):
        return KINDS["image"]
    return KINDS[backbone_or_prep.modality]


def drop_undecodable(splits: DataSplits, images: dict) -> DataSplits:
    keep = lambda samples: [s for s in samples if s.path in images]  # noqa: E731
    splits.train, splits.val, splits.test = keep(splits.train), keep(splits.val), keep(splits.test)
    missing = sorted(set(splits.classes) - {s.label for s in splits.train})
    if missing:
        raise UserError(f"no readable training image left for class {missing[0]!r} (see the skipped files)")
    return splits


def gather_images(inputs: list) -> tuple[list[str], list[tuple[str, str]]]:
    """Files as given, folders searched recursively for images; what is not an image is listed."""
    found, skipped = [], []
    for item in map(str, inputs):  # paths as str, the keys decoding returns
        if os.path.isdir(item):
            found += list_images(Path(item), skipped)
        elif os.path.isfile(item):
            found.append(item)
        else:
            raise UserError(f"no such file or folder: {item}")
    return found, skipped


def log_skipped(splits: DataSplits, log) -> None:
    for path, reason in splits.skipped:
        log(f"warning: skipped {path}: {reason}")
