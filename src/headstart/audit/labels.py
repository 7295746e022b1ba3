"""Likely label errors: out-of-sample class probabilities from K-fold linear probes on the cached
features (no backbone training), handed to cleanlab's `find_label_issues`."""

from __future__ import annotations

import warnings

import numpy as np

from .flags import Flag


def out_of_sample_probabilities(
    features: np.ndarray, labels: np.ndarray, folds: int, seed: int, regularisation: float
) -> np.ndarray:
    """Each sample's class probabilities from a logistic-regression probe fitted on the other folds
    (standardised features; `regularisation` is scikit-learn's C: smaller is stronger)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = max(2, min(folds, int(np.bincount(labels).min())))  # every fold needs every class
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return cross_val_predict(
            probe, features, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba"
        )


def tfidf_probabilities(
    texts: list[str], labels: np.ndarray, folds: int, seed: int, regularisation: float = 3.0
) -> np.ndarray:
    """The same out-of-sample probabilities from a TF-IDF (word 1-2-grams) logistic regression:
    for texts, averaged with the embedding probe's (measured: docs/audit.md)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    folds = max(2, min(folds, int(np.bincount(labels).min())))
    probe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(C=regularisation, max_iter=3000),
    )
    return cross_val_predict(
        probe, texts, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba"
    )


def label_issue_flags(
    samples, splits: list[str], classes: list[str], probabilities: np.ndarray, filter_by: str
) -> tuple[list[Flag], np.ndarray]:
    """Flags for the samples cleanlab finds, worst first (by its label quality score: the
    probability the probe gives the given label), and every sample's quality score."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.array([classes.index(s.label) for s in samples])
    quality = get_label_quality_scores(labels, probabilities)
    ranked = find_label_issues(labels, probabilities, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    flags = []
    for i in ranked:
        suggested = classes[int(probabilities[i].argmax())]
        flags.append(
            Flag(
                samples[i].path,
                "label_issue",
                f"probe gives the label {samples[i].label!r} {probabilities[i, labels[i]]:.0%}, "
                f"{suggested!r} {probabilities[i].max():.0%}",
                samples[i].label,
                splits[i],
                suggested_label=suggested,
                score=float(quality[i]),
                # the test split is not cleaned of what a probe finds hard: that would flatter every score
                excluded=splits[i] != "test",
            )
        )
    return flags, quality
