"""headstart: fine-tune a pretrained backbone on your own small labeled data set."""

__version__ = "0.1.0"

# the audit package's function, bound after the package: headstart.audit(...) audits
from .audit import audit  # noqa: E402
from .config import TrainConfig  # noqa: E402


def train(data: str, minutes: float | None = None, **settings):
    """Fine-tune and return a RunResult (run_dir, metrics, model, classes). Settings are TrainConfig keys.
    With none of backbone, strategy, image_size, epochs or fit_minutes among them, spend about `minutes`
    (default 10) choosing and training the best model; the run folder's auto.json says how it chose.
    minutes=0: the fixed defaults; minutes with a backbone named: that backbone is the only one probed
    (backbone="a,b": those two, against each other)."""
    from .api import run_training, search_minutes
    from .config import config_from_dict

    return run_training(
        config_from_dict({"data": str(data), **settings}),
        minutes=search_minutes(minutes, settings),
        backbone=settings.get("backbone"),
    )


def resume(run_dir):
    """Go on with a run whose training stopped (killed, crashed), after its last finished epoch."""
    from .api import run_training
    from .run_folder import config_of_run

    return run_training(config_of_run(run_dir), resume=True)


def load_run(run_dir, checkpoint: str = "model"):
    """A finished run's model ("model"; or its "best" or "last" epoch), classes and preprocessing."""
    from .inference import load_run as _load_run

    return _load_run(run_dir, checkpoint)


def evaluate(run_dir, data=None) -> dict:
    from .inference import evaluate_run

    return evaluate_run(run_dir, data)


def predict(run_dir, inputs, top_k: int = 3):
    from .inference import predict as _predict

    return _predict(run_dir, list(inputs), top_k)


def predict_table(run_dir, table, output, top_k: int = 3, text_column=None) -> dict:
    """Predict every row of a table of texts (CSV, TSV, JSON lines, Parquet) into `output` (.csv or
    .jsonl), a chunk of rows at a time; rows without a usable text go to OUTPUT.skipped.csv."""
    from .predict_table import predict_table as _predict_table

    return _predict_table(run_dir, table, output, top_k, text_column)


__all__ = ["TrainConfig", "train", "audit", "resume", "load_run", "evaluate", "predict", "predict_table"]
