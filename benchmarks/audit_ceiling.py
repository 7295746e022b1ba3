"""How well could any probe of this backbone find flipped labels? A bound from fine-tuned models.

    .venv/bin/python benchmarks/audit_ceiling.py

The audit ranks items by the out-of-sample probability a probe gives their label. Its recall at
50% precision depends on how often the probe is confidently wrong about a correctly labeled item:
those rank among the flips. This script asks what the ranking would give if the probe were as good
as a whole fine-tuned model rather than a linear probe on frozen features. It reads the test
predictions of the Rotten Tomatoes runs of benchmarks/texts.py (`head`, `lora`, `full`, each seed;
every test text is out-of-sample for its model), flips 5% of the test labels at random (200 draws
per run), ranks by the probability of the given label and reports the largest recall at which
precision is still >= 50%. The models were trained on clean labels, which flatters them against
a probe trained on the noisy ones: the figures are an upper estimate of the audit's ranking with
such a probe. Writes benchmarks/results/audit-ceiling.json.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from audit import ranking_summary
from common import write_results

RUNS = Path(__file__).parent / "runs" / "benchmark" / "texts-rt"
RESULTS = Path(__file__).parent / "results"
FLIP, DRAWS = 0.05, 200


def given_label_probability(run: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each test text's probability of each class (binary: of the first class), its label index, the classes."""
    with open(run / "test_predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    classes = sorted({r["label"] for r in rows} | {r["predicted"] for r in rows})
    if len(classes) != 2:
        raise SystemExit(f"{run}: expected two classes, found {classes}")
    first = np.array(
        [float(r["probability"]) if r["predicted"] == classes[0] else 1 - float(r["probability"]) for r in rows]
    )
    labels = np.array([classes.index(r["label"]) for r in rows])
    return np.stack([first, 1 - first], 1), labels, classes


def recall_at_half_precision(probabilities: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> float:
    """Flip FLIP of the labels at random; the ranking's largest recall of them at precision >= 50%."""
    n = len(labels)
    flipped = np.zeros(n, bool)
    flipped[rng.permutation(n)[: round(FLIP * n)]] = True
    given = np.where(flipped, 1 - labels, labels)
    quality = probabilities[np.arange(n), given]
    return ranking_summary(dict(enumerate(quality.tolist())), set(np.flatnonzero(flipped).tolist()))[
        "max_recall_at_precision_0.5"
    ]


def main() -> None:
    runs = []
    for run in sorted(p for p in RUNS.glob("*-seed*") if (p / "test_predictions.csv").is_file()):
        probabilities, labels, _ = given_label_probability(run)
        draws = [recall_at_half_precision(probabilities, labels, np.random.default_rng(d)) for d in range(DRAWS)]
        strategy, seed = run.name.rsplit("-seed", 1)
        runs.append(
            {
                "strategy": strategy,
                "seed": int(seed),
                "test_items": len(labels),
                "test_accuracy": float((probabilities.argmax(1) == labels).mean()),
                "recall_at_precision_0.5": {
                    "mean": float(np.mean(draws)),
                    "p5": float(np.percentile(draws, 5)),
                    "p95": float(np.percentile(draws, 95)),
                },
            }
        )
        print(
            f"{run.name:14s} accuracy {runs[-1]['test_accuracy']:.3f}  recall at precision >= 0.5: "
            f"{np.mean(draws):.3f} (5-95%: {np.percentile(draws, 5):.3f}-{np.percentile(draws, 95):.3f})"
        )
    if not runs:
        raise SystemExit(f"no runs with test_predictions.csv under {RUNS}: run benchmarks/texts.py rt first")
    summary = {}
    for strategy in sorted({r["strategy"] for r in runs}):
        means = [r["recall_at_precision_0.5"]["mean"] for r in runs if r["strategy"] == strategy]
        accuracies = [r["test_accuracy"] for r in runs if r["strategy"] == strategy]
        summary[strategy] = {
            "seeds": len(means),
            "test_accuracy_mean": float(np.mean(accuracies)),
            "recall_at_precision_0.5_mean": float(np.mean(means)),
            "min": float(np.min(means)),
            "max": float(np.max(means)),
        }
    write_results(
        RESULTS / "audit-ceiling.json",
        {"protocol": __doc__, "flip": FLIP, "draws": DRAWS, "summary": summary, "runs": runs},
    )


if __name__ == "__main__":
    main()
