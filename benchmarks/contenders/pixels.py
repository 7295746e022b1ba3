"""Images: a linear model or an RBF SVM on the raw pixels, downscaled to 32 px, in [0, 1].

--model logistic is the reference every headstart image run reports (the same code); --model rbf-svm is
scikit-learn's SVC with its defaults (C=1, gamma="scale"), what a user fits in seconds on small images.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from common import parse_args, read_splits, write_info, write_predictions  # noqa: E402
from headstart.evaluation.reference import PIXEL_SIDE, REFERENCES, fit_reference, pixel_features  # noqa: E402


def load(paths: list[Path]) -> list[torch.Tensor]:
    """Each image as uint8 channels-first, grey images with one channel."""
    images = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB")
            array = np.array(im)
        images.append(torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy()))
    return images


def rbf_svm(train_x, train_y, test_x) -> list[str]:
    from sklearn.svm import SVC

    model = SVC(kernel="rbf")
    model.fit(train_x, train_y)
    return [str(p) for p in model.predict(test_x)]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument("--model", choices=("logistic", "rbf-svm")))
    splits = read_splits(args.data)
    train, test = splits["train"], splits["test"]
    start = time.perf_counter()
    features = pixel_features(load(train.paths) + load(test.paths))
    train_x, test_x = features[: len(train.ids)], features[len(train.ids) :]
    if args.model == "logistic":
        predicted, _ = fit_reference("image", train_x, train.labels, test_x)
        model = REFERENCES["image"][0]
    else:
        predicted, model = rbf_svm(train_x, train.labels, test_x), f"RBF SVM on {PIXEL_SIDE} px pixels"
    write_predictions(args.out, test.ids, predicted)
    write_info(
        args.out,
        {
            "model": model,
            "features": features.shape[1],
            "seconds_after_reading": time.perf_counter() - start,
            "recipe_source": "scikit-learn defaults: LogisticRegression(max_iter=1000) or SVC(kernel='rbf') on the "
            "pixels in [0, 1] (standardised pixels measured worse on all three image sets); pixels as headstart.evaluation.reference.pixel_features (centre square, 32 px, grey "
            "when the channels are equal)",
        },
    )


if __name__ == "__main__":
    main()
