"""The cheap reference every run reports (evaluation/reference.py): pixels and TF-IDF fits on the run's own split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import headstart
from headstart.backbones import create_backbone
from headstart.config import TrainConfig
from headstart.data.kinds import ImageKind
from headstart.data.rotten_tomatoes import load_reviews
from headstart.evaluation.reference import fit_reference, pixel_features


def test_pixel_features_take_the_centre_square_downscaled_never_up_and_grey_when_channels_agree():
    wide = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8)
    assert pixel_features([wide]).shape == (1, 3 * 32 * 32)
    grey = torch.randint(0, 256, (1, 64, 64), dtype=torch.uint8).expand(3, -1, -1)
    assert pixel_features([grey]).shape == (1, 32 * 32)
    small = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    features = pixel_features([small, small])
    assert features.shape == (2, 28 * 28) and np.allclose(features[0], small.flatten().numpy() / 255.0)


def test_the_text_reference_learns_sentiment_from_real_reviews():
    reviews = load_reviews()
    fresh = [t for t, c in reviews if c == "fresh"][:1200]
    rotten = [t for t, c in reviews if c == "rotten"][:1200]
    train, labels = fresh[:1000] + rotten[:1000], ["fresh"] * 1000 + ["rotten"] * 1000
    test, truth = fresh[1000:] + rotten[1000:], np.array(["fresh"] * 200 + ["rotten"] * 200)
    predicted, seconds = fit_reference("text", train, labels, test)
    accuracy = np.mean(np.array(predicted) == truth)
    assert accuracy > 0.62 and seconds < 30
    shuffled, _ = fit_reference("text", train, list(np.random.default_rng(0).permutation(labels)), test)
    assert np.mean(np.array(shuffled) == truth) < accuracy - 0.05


@pytest.fixture(scope="module")
def run(elpv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reference"
    return headstart.train(str(elpv), strategy="head", epochs=1, image_size=64, batch_size=8, out=str(out))


def test_a_run_reports_the_reference_fitted_on_its_training_split_and_scored_on_its_test_split(run, elpv):
    reference = json.loads((run.run_dir / "metrics.json").read_text())["reference"]
    assert reference["name"] == "logistic regression on 32 px pixels" and reference["split"] == "test"
    # the same fit, done here from the run's own split and decoding: train images in, test images scored
    config = TrainConfig(data=str(elpv), image_size=64)
    kind = ImageKind()
    prep = kind.preprocessing(create_backbone("mobilenet_v2"), config)
    splits, images, _ = kind.read(str(elpv), config, config.val_fraction, config.test_fraction, 0, prep)
    x = lambda samples: pixel_features([images[s.path] for s in samples])  # noqa: E731
    model = LogisticRegression(max_iter=1000).fit(x(splits.train), [s.label for s in splits.train])
    expected = np.mean(model.predict(x(splits.test)) == np.array([s.label for s in splits.test]))
    assert reference["n"] == len(splits.test) == run.metrics["test"]["n"]
    assert reference["accuracy"] == pytest.approx(expected)


def test_the_report_shows_the_reference_beside_the_result(run):
    report = json.loads((run.run_dir / "report.json").read_text())
    assert report["reference"]["accuracy"] == run.metrics["reference"]["accuracy"]
    assert report["reference_sentence"].startswith("The cheap reference, logistic regression on 32 px pixels")
    html = (run.run_dir / "report.html").read_text()
    assert 'id="reference"' in html and "reference: logistic regression on 32 px pixels" in html
