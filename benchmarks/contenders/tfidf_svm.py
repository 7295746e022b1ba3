"""Texts: TF-IDF of words and word pairs into a linear SVM, the reference every headstart text run reports."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import parse_args, read_splits, write_info, write_predictions  # noqa: E402
from headstart.evaluation.reference import REFERENCES, fit_reference  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)
    splits = read_splits(args.data)
    train, test = splits["train"], splits["test"]
    predicted, seconds = fit_reference("text", train.texts, train.labels, test.texts)
    write_predictions(args.out, test.ids, predicted)
    write_info(
        args.out,
        {
            "model": REFERENCES["text"][0],
            "fit_and_predict_seconds": seconds,
            "recipe_source": "headstart.evaluation.reference.text_model: TfidfVectorizer(ngram_range=(1, 2), "
            "sublinear_tf=True) + LinearSVC(), scikit-learn's defaults otherwise",
        },
    )


if __name__ == "__main__":
    main()
