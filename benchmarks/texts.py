"""Texts, on the 2-core CPU: Rotten Tomatoes with minilm-l6 (each strategy, beside a TF-IDF + linear
SVM reference fitted on the same split in the same run), and Reuters R8 fine-tuned from minilm-l6
with and without domain-adaptive pretraining on R52's training texts.

    .venv/bin/python benchmarks/texts.py rt [--strategies head,discriminative,...] [--seeds 0,1,2] [--set key=value] [--keep]
    .venv/bin/python benchmarks/texts.py r8 [--seeds 0,1,2] [--adapt-epochs 1] [--set key=value] [--keep]

R8 rows: the unadapted backbone, and the backbone adapted for --adapt-epochs epochs ("minilm-l6 + DAPT"
for one epoch, "minilm-l6 + DAPT (N epochs)" otherwise); with --keep, runs with another number of
adaptation epochs are kept beside them, each with its own adaptation record and adapted folder.

Writes benchmarks/results/texts-rt.json or texts-r8.json (every run's metrics and wall time, the
machine) and prints the Markdown table docs/texts.md shows. The split follows the seed (R8: its own
train/test split, val carved from train by the seed); every strategy of a seed sees the same split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC

import headstart
from common import write_results
from headstart.data.reuters import materialise_reuters
from headstart.data.rotten_tomatoes import materialise_rotten_tomatoes
from headstart.data.texts import load_text_data
from headstart.evaluation.metrics import mean_std
from headstart.training.adapt import AdaptConfig, adapt

RESULTS = Path(__file__).parent / "results"
RT_STRATEGIES = "head,gradual,full,discriminative,lp-ft,lora,scratch"


def tfidf_svm(data: Path, config: dict, seed: int) -> dict:
    """The reference: word 1-2-gram TF-IDF and a linear SVM, fitted on train+val, scored on test."""
    splits, texts = load_text_data(
        data, val_fraction=config.get("val_fraction", 0.1), test_fraction=config.get("test_fraction", 0.2), seed=seed
    )
    fit = splits.train + splits.val
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LinearSVC(C=0.5).fit(vectorizer.fit_transform([texts[s.path] for s in fit]), [s.label for s in fit])
    predicted = model.predict(vectorizer.transform([texts[s.path] for s in splits.test]))
    truth = [s.label for s in splits.test]
    return {"accuracy": accuracy_score(truth, predicted), "macro_f1": f1_score(truth, predicted, average="macro")}


def run_record(name: str, seed: int, out: Path, result, started: float) -> dict:
    m = result.metrics
    return {
        "strategy": name,
        "seed": seed,
        "run_dir": str(out),
        "test": {k: m["test"][k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "n")},
        "wall_seconds": time.perf_counter() - started,
        "epochs": len(m["history"]),
        "trainable_params": max(h["trainable_params"] for h in m["history"]),
        "train_samples_per_s": m["train_images_per_s"],
    }


def table(runs: list[dict]) -> str:
    lines = [
        "| model | test accuracy | macro-F1 | wall time | trainable parameters | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["strategy"] for r in runs):
        rs = [r for r in runs if r["strategy"] == name]
        cells = []
        for key in ("accuracy", "macro_f1"):
            mean, std = mean_std([r["test"][key] for r in rs])
            cells.append(f"{100 * mean:.1f}%" + (f" ± {100 * std:.1f}" if len(rs) > 1 else ""))
        wall = sum(r["wall_seconds"] for r in rs) / len(rs)
        params = rs[0].get("trainable_params")
        lines.append(
            f"| {name} | {' | '.join(cells)} | {wall / 60:.1f} min | "
            f"{f'{params / 1e6:.2f} M' if params else '-'} | {len(rs)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("rt", "r8"))
    parser.add_argument("--strategies", default=RT_STRATEGIES, help="rt: the strategies to run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--adapt-epochs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="any TrainConfig key=value, for every run")
    parser.add_argument("--keep", action="store_true", help="keep the runs already in the results file; run the rest")
    args = parser.parse_args()
    out = RESULTS / f"texts-{args.task}.json"
    settings = {"backbone": "minilm-l6"} | ({"max_length": 128} if args.task == "r8" else {})
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = value
    kept = json.loads(out.read_text()) if args.keep and out.is_file() else {}
    if kept and kept["settings"] != settings:
        raise SystemExit(f"--keep: {out} was measured with other settings: {kept['settings']}")
    runs = kept.get("runs", [])
    # adaptation records by epochs (a file written before there were several holds one, of 1 epoch)
    adapts = kept.get("adapts") or ({"1": kept["adapt"]} if kept.get("adapt") else {})
    done = {(r["strategy"], r["seed"]) for r in runs}
    seeds = [int(s) for s in args.seeds.split(",")]

    def record() -> None:
        write_results(
            out,
            {
                "benchmark": {"rt": "Rotten Tomatoes, minilm-l6", "r8": "Reuters R8, minilm-l6, DAPT on R52"}[
                    args.task
                ],
                "settings": settings,
                "runs": runs,
                "adapts": adapts,
                "table_markdown": table(runs),
            },
        )

    if args.task == "rt":
        data = materialise_rotten_tomatoes()
        plan = [(name, seed) for seed in seeds for name in ["tfidf-svm"] + args.strategies.split(",")]
    else:
        data, unlabeled = materialise_reuters()
        epochs = args.adapt_epochs
        suffix = "" if epochs == 1 else f"-{epochs}-epochs"
        adapted = Path("runs") / "benchmark" / "texts-r8" / f"adapted-minilm-l6{suffix}"
        dapt = "minilm-l6 + DAPT" + ("" if epochs == 1 else f" ({epochs} epochs)")
        if str(epochs) not in adapts:
            result = adapt(
                AdaptConfig(
                    data=str(unlabeled),
                    backbone="minilm-l6",
                    epochs=epochs,
                    max_length=settings.get("max_length", 128),
                    out=str(adapted),
                )
            )
            adapts[str(epochs)] = {
                k: result.record[k]
                for k in (
                    "documents",
                    "steps",
                    "perplexity_before",
                    "perplexity_after",
                    "history",
                    "wall_seconds",
                    "data",
                )
            }
            record()
        plan = [(name, seed) for seed in seeds for name in ("tfidf-svm", "minilm-l6", dapt)]
    for name, seed in plan:
        if (name, seed) in done:
            continue
        started = time.perf_counter()
        if name == "tfidf-svm":
            runs.append(
                {
                    "strategy": name,
                    "seed": seed,
                    "test": tfidf_svm(data, settings, seed),
                    "wall_seconds": time.perf_counter() - started,
                }
            )
        else:
            run_dir = (
                Path("runs")
                / "benchmark"
                / f"texts-{args.task}"
                / f"{name.replace(' + ', '-').replace(' (', '-').replace(' epochs)', '-epochs')}-seed{seed}"
            )
            options = {**settings, "seed": seed, "out": str(run_dir)}
            if args.task == "rt":
                options["strategy"] = name
            elif name == dapt:
                options["backbone"] = str(adapted)
            runs.append(run_record(name, seed, run_dir, headstart.train(str(data), **options), started))
        print(json.dumps(runs[-1]), flush=True)
        record()
    record()
    print(table(runs))


if __name__ == "__main__":
    main()
