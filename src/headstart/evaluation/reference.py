"""The cheap reference every run is measured against: what a user fits in seconds without a pretrained
model. Images: a logistic regression on the pixels, downscaled to 32 px; texts: TF-IDF of words and word
pairs with a linear SVM. On small, simple data they are hard to beat, so a run that does not beat its
reference says so (the benchmark suite's cells `pixels-logistic` and `tfidf-svm` are these same fits)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import label_metrics

PIXEL_SIDE = 32


def pixel_features(images: list[torch.Tensor], side: int = PIXEL_SIDE) -> np.ndarray:
    """One row per image (uint8, channels first): the centre square, downscaled to side x side (never
    up), grey when every image's channels are equal, as floats in [0, 1]."""
    smallest = min(min(im.shape[-2:]) for im in images)
    side = min(side, smallest)
    grey = all(im.shape[0] == 1 or bool((im[0] == im[1]).all() and (im[1] == im[2]).all()) for im in images)
    rows = []
    for im in images:
        h, w = im.shape[-2:]
        s = min(h, w)
        square = im[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        square = square[:1] if grey else square.expand(3, -1, -1)
        small = F.interpolate(square[None].float(), size=(side, side), mode="bilinear", antialias=True)
        rows.append((small / 255.0).flatten().numpy())
    return np.stack(rows)


def pixel_model():
    """A multinomial logistic regression on the pixels as they are, in [0, 1] (standardising them measured
    worse on the suite's three image sets: the near-constant border pixels get as much weight as the rest)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def text_model():
    """TF-IDF of words and word pairs (sublinear term frequencies) into a linear SVM."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LinearSVC())


REFERENCES = {
    "image": ("logistic regression on 32 px pixels", pixel_model),
    "text": ("TF-IDF (words and word pairs) + linear SVM", text_model),
}


def fitted_reference(kind: str, train_x, train_y: list[str]):
    """The reference for this kind of data fitted on the training items (pixel_features rows, or texts);
    None when every training item has the same class (nothing to fit)."""
    if len(set(train_y)) < 2:
        return None
    model = REFERENCES[kind][1]()
    with warnings.catch_warnings():  # a logistic regression stopped at max_iter is still the reference
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(train_x, train_y)
    return model


def fit_reference(kind: str, train_x, train_y: list[str], test_x) -> tuple[list[str], float]:
    """The reference fitted on the training items; its predictions for the test items and the seconds
    fitting and predicting took."""
    start = time.perf_counter()
    model = fitted_reference(kind, train_x, train_y)
    return predictions(model, train_y, test_x), time.perf_counter() - start


def reference_metrics(
    kind: str, train_x, train_y: list[str], eval_x, eval_y: list[str], classes: list[str]
) -> tuple[dict, object]:
    """The reference's name, its metrics on the evaluated items and its seconds; and the fitted reference
    (None when there was nothing to fit)."""
    start = time.perf_counter()
    model = fitted_reference(kind, train_x, train_y)
    predicted = predictions(model, train_y, eval_x)
    seconds = time.perf_counter() - start
    return {
        "name": REFERENCES[kind][0],
        **label_metrics(eval_y, predicted, classes),
        "seconds": round(seconds, 2),
    }, model


def predictions(model, train_y: list[str], x) -> list[str]:
    """A fitted reference's classes for `x`; with nothing fitted, the one class of the training items."""
    return [train_y[0]] * len(x) if model is None else [str(p) for p in model.predict(x)]
