"""The `headstart` command: a thin layer over the Python API."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import UserError
from .strategies import STRATEGIES, default_comparison

DEFAULT_STRATEGIES = default_comparison()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune a pretrained model on your own labeled images or texts.",
)

# The demo's fixed recipe for the embedded default (ELPV solar cells), measured in docs/defaults.md: what
# `headstart demo --minutes 0` trains, and the benchmarks' ELPV runs. Cells have no up or down (vflip), and a
# defect may touch the cell's edge (no centre crop); the demo's choice by measuring keeps these three.
DEMO_OVERRIDES = {
    "backbone": "mobilenet_v2",
    "strategy": "discriminative",
    "epochs": 14,
    "test_fraction": 0.25,
    "vflip": True,
    "crop_pct": 1.0,
}
DEMO_DATA_SETTINGS = ("test_fraction", "vflip", "crop_pct")


def _settings(data: Optional[str], config_file: Optional[Path], options: dict, settings: list[str]) -> dict:
    """The settings given by a config file, DATA, options and --set key=value, later ones winning."""
    from .config import load_config_file

    values = load_config_file(config_file) if config_file else {}
    if data is not None:
        values["data"] = data
    values.update({k: v for k, v in options.items() if v is not None})
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set takes key=value, got {item!r}")
        values[key.strip().replace("-", "_")] = value.strip()
    return values


@app.command()
def train(
    data: Optional[str] = typer.Argument(
        None,
        help="Image folder (one sub-folder per class; train/ val/ test/ optional) or CSV manifest (path,label); for a text backbone, a table (CSV, TSV, JSON lines, Parquet; columns text,label) or a datasets folder.",
    ),
    backbone: Optional[str] = typer.Option(
        None,
        help="Backbone name (see `headstart models`), or timm:<name>, torchvision:<name>, hf:<repo id or folder>; "
        "with --minutes, several separated by commas are probed against each other.",
    ),
    strategy: Optional[str] = typer.Option(None, help=f"{' | '.join(STRATEGIES)}."),
    epochs: Optional[int] = typer.Option(None, help="Epochs in all, shared by the strategy's stages."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate of the head; lower layer groups get less."),
    image_size: Optional[int] = typer.Option(None, help="Input side in pixels (default: the backbone's own)."),
    batch_size: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    vflip: Optional[bool] = typer.Option(None, "--vflip/--no-vflip", help="Also flip images vertically when training."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML or JSON file of settings; options given here win."
    ),
    set_: list[str] = typer.Option([], "--set", help="Any setting as key=value (repeatable), e.g. --set lr_decay=2.0."),
    out: Optional[str] = typer.Option(None, help="Run folder (default runs/<time>-<backbone>-<strategy>)."),
    resume: Optional[Path] = typer.Option(
        None,
        "--resume",
        help="A run folder whose training stopped: go on after its last finished epoch, with its own settings.",
    ),
    exclude_audit: Optional[str] = typer.Option(
        None,
        "--exclude-audit",
        help="An audit folder (headstart audit): leave out the items its flagged.csv marks excluded.",
    ),
    minutes: Optional[float] = typer.Option(
        None,
        help="Spend about this many minutes choosing (backbone, input side, strategy, epochs) and training the "
        "best model; the run folder's auto.json says how it chose. Default: 10 when none of backbone, strategy, "
        "image_size, epochs is set, else 0 (the fixed defaults). With --backbone, only the backbones it names are probed.",
    ),
):
    """Fine-tune a backbone on DATA and write a run folder: model, metrics, plots, config, report."""
    from .api import run_training, search_minutes

    options = dict(
        backbone=backbone,
        strategy=strategy,
        epochs=epochs,
        lr=lr,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
        vflip=vflip,
        out=out,
        exclude_audit=exclude_audit,
    )
    if resume is not None:
        given = (
            [k for k, v in options.items() if v is not None]
            + (["DATA"] if data else [])
            + (["--config"] if config else [])
            + (["--set"] if set_ else [])
            + (["--minutes"] if minutes is not None else [])
        )
        if given:
            raise UserError(f"--resume uses the run's own settings; do not pass {', '.join(given)}")
        from .run_folder import config_of_run

        run_training(config_of_run(resume), resume=True)
        return
    from .config import config_from_dict

    values = _settings(data, config, options, set_)
    run_training(
        config_from_dict(values, source=str(config) if config else "options"),
        minutes=search_minutes(minutes, values),
        backbone=values.get("backbone"),
    )


@app.command()
def audit(
    data: str = typer.Argument(
        ..., help="Image folder or CSV manifest (path,label), or a table of texts (text,label), as for train."
    ),
    backbone: Optional[str] = typer.Option(
        None,
        help="Whose features the near-duplicate and label checks use (default: mobilenet_v2 for images, minilm-l6 for texts).",
    ),
    out: Optional[str] = typer.Option(None, help="Audit folder (default runs/audit-<time>)."),
    near_threshold: Optional[float] = typer.Option(
        None, help="Centred feature cosine above which two items are near copies (default 0.995 images, 0.95 texts)."
    ),
    folds: Optional[int] = typer.Option(None, help="K of the K-fold linear probes (default 5)."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML or JSON file of settings (split, image size, text columns)."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="A train setting (split, image_size, text_column, ...) or an audit setting (probe_c, filter_by, tiny_class, label_issues) as key=value.",
    ),
):
    """Check DATA before training: unusable files, duplicates, conflicting labels, train/test leaks, class balance,
    likely label errors. Writes audit.html, flagged.csv, audit.json and clean.csv; deletes nothing."""
    from .audit import audit as run_audit

    values = _settings(data, config, dict(near_threshold=near_threshold, folds=folds), set_)
    values.pop("data")
    run_audit(data, backbone=backbone, out=out, **values)


@app.command()
def adapt(
    data: str = typer.Argument(
        ...,
        help="Unlabeled text: a .txt file (one document per line), a folder of .txt files, or a table's text column; with --tapt, the labeled task table.",
    ),
    backbone: str = typer.Option(
        "minilm-l6", help="Text backbone: minilm-l6, hf:<repo id or folder>, or a folder an earlier adapt wrote."
    ),
    tapt: bool = typer.Option(
        False,
        "--tapt",
        help="Task-adaptive: DATA is the labeled task table; adapt on the texts of its training split only.",
    ),
    text_column: str = typer.Option("text", help="The column of a table that holds the text."),
    epochs: int = typer.Option(1, min=1),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimiser steps."),
    lr: float = typer.Option(1e-4),
    batch_size: int = typer.Option(32, min=1),
    max_length: int = typer.Option(128, min=8, help="Tokens kept per document."),
    whole_word: bool = typer.Option(
        False, "--whole-word", help="Mask whole words (always as [MASK]) instead of single tokens."
    ),
    seed: int = typer.Option(0),
    out: Optional[str] = typer.Option(None, help="Backbone folder to write (default runs/adapt-<time>-<backbone>)."),
):
    """Continue a text backbone's masked-LM pretraining on in-domain text (DAPT/TAPT); train takes the result with --backbone."""
    from .training.adapt import adapt as run_adapt
    from .training.adapt import adapt_config_from_dict

    run_adapt(
        adapt_config_from_dict(
            dict(
                data=data,
                backbone=backbone,
                tapt=tapt,
                text_column=text_column,
                epochs=epochs,
                max_steps=max_steps,
                lr=lr,
                batch_size=batch_size,
                max_length=max_length,
                whole_word=whole_word,
                seed=seed,
                out=out,
            )
        )
    )


@app.command()
def compare(
    data: Optional[str] = typer.Argument(
        None,
        help="Image folder or CSV manifest, as for train (default: the embedded ELPV cells, with the demo's settings).",
    ),
    backbone: Optional[str] = typer.Option(None, help="Backbone name, as for train."),
    strategies: Optional[str] = typer.Option(
        None,
        help=f"Comma-separated (default: {', '.join(DEFAULT_STRATEGIES)}, and lora for a backbone with attention layers).",
    ),
    seeds: str = typer.Option("0,1,2", help="Training seeds, comma-separated; every seed uses the same split."),
    head_init: str = typer.Option(
        "xavier", "--head-init", help="xavier, source, or xavier,source to run each strategy both ways."
    ),
    split_seed: int = typer.Option(0, help="Seed of the train/val/test split shared by every run."),
    epochs: Optional[int] = typer.Option(None, help="Epochs of every run (the shared budget)."),
    minutes: Optional[float] = typer.Option(
        None,
        help="Or a time budget: every run stops after the epoch at which its training steps took this long (--epochs caps it and plans the schedule).",
    ),
    image_size: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML or JSON file of settings shared by every run."),
    set_: list[str] = typer.Option([], "--set", help="Any setting shared by every run, as key=value (repeatable)."),
    out: Optional[str] = typer.Option(
        None, help="Comparison folder (default runs/compare-<time>); an existing one is resumed."
    ),
):
    """Run several strategies on one data set and backbone, same split and budget, several seeds; write a report."""
    from .compare import compare as run_compare

    values = _settings(
        data,
        config,
        dict(
            backbone=backbone,
            epochs=epochs,
            image_size=image_size,
            batch_size=batch_size,
            time_budget_s=minutes * 60 if minutes is not None else None,
        ),
        set_,
    )
    if data is None and "data" not in values:  # the embedded ELPV cells, with the demo's recipe
        values = {
            **{k: v for k, v in DEMO_OVERRIDES.items() if k != "strategy"},
            "data": str(_embedded_elpv()),
            **values,
        }
    run_compare(
        values,
        strategies=_comma_list(strategies) if strategies else None,
        seeds=[_int(s, "--seeds") for s in _comma_list(seeds)],
        head_inits=_comma_list(head_init),
        split_seed=split_seed,
        out=out,
    )


@app.command()
def report(folder: Path = typer.Argument(..., help="A run folder, or a comparison folder (with compare.json).")):
    """Write (again) the HTML report and report.json of a run or a comparison."""
    from .reporting.compare import RECORD, write_comparison_report
    from .reporting.report import report_run

    path = write_comparison_report(folder) if (folder / RECORD).is_file() else report_run(folder)
    typer.echo(f"report: {path}")


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{option} takes whole numbers separated by commas, got {text!r}") from None


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run folder."),
    data: Optional[str] = typer.Argument(
        None, help="Image folder or manifest to evaluate on (default: the run's own val and test splits)."
    ),
):
    """Evaluate a run's model; prints metrics and writes RUN/eval.json."""
    from .evaluation.metrics import summary_line
    from .inference import evaluate_run

    result = evaluate_run(run, data)
    for path, reason in result["skipped"]:
        typer.echo(f"warning: skipped {path}: {reason}", err=True)
    for name in ("val", "test", "all"):
        if name in result:
            typer.echo(f"{name}: {summary_line(result[name])}")
    typer.echo(f"written: {run / 'eval.json'}")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="A run folder."),
    inputs: list[str] = typer.Argument(
        ...,
        help="Image files or folders; for a text run, the texts themselves, or one table of texts "
        "(.csv, .tsv, .jsonl, .parquet) to predict into --output.",
    ),
    top_k: int = typer.Option(3, "--top-k", min=1),
    format: str = typer.Option("csv", "--format", help="csv | json (a table's output: by the --output suffix)"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write here instead of standard output (a table's: .csv or .jsonl)."
    ),
    text_column: Optional[str] = typer.Option(
        None, "--text-column", help="A table's column of texts (default: the run's text_column)."
    ),
):
    """Predict the top-k classes of images (or texts, or a table of texts) with a run's model."""
    from .data.table_stream import STREAMED_SUFFIXES
    from .inference import predict as run_predict

    if format not in ("csv", "json"):
        raise UserError(f"--format must be csv or json, got {format!r}")
    table = inputs[0] if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in STREAMED_SUFFIXES else None
    if table is not None:
        from .predict_table import predict_table

        if output is None:
            raise UserError(f"predicting the table {table} writes a table: name it with --output FILE.csv or .jsonl")
        done = predict_table(run, table, output, top_k, text_column, log=lambda line: typer.echo(line, err=True))
        typer.echo(f"predicted {done['predicted']:,} of {done['rows']:,} rows into {done['output']}")
        return
    if text_column is not None:
        raise UserError("--text-column names a table's column: give one table (.csv, .tsv, .jsonl, .parquet)")
    rows, skipped = run_predict(run, inputs, top_k)
    for path, reason in skipped:
        typer.echo(f"warning: skipped {path}: {reason}", err=True)
    stream = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if format == "json":
            json.dump(rows, stream, indent=2)
            stream.write("\n")
        else:
            writer = csv.writer(stream)
            k = max((len(r["top"]) for r in rows), default=top_k)
            writer.writerow(["path"] + [f"{x}{i}" for i in range(1, k + 1) for x in ("label", "probability")])
            for r in rows:
                writer.writerow([r["path"]] + [v for t in r["top"] for v in (t["label"], t["probability"])])
    finally:
        if output:
            stream.close()


@app.command()
def export(
    run: Path = typer.Argument(..., help="A run folder."),
    format: str = typer.Option("onnx", "--format", help="onnx | torchscript | safetensors"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write to (default RUN/export)."),
):
    """Export a run's model (ONNX, TorchScript, safetensors) with preprocessing.json, checked against PyTorch."""
    from .export import PREPROCESSING, export_run

    check = export_run(run, format, out, log=lambda line: typer.echo(line, err=True))
    folder = Path(check["file"]).parent
    typer.echo(f"{format}: {check['file']} ({check['exporter']})")
    typer.echo(f"preprocessing: {folder / PREPROCESSING}")
    typer.echo(
        f"check: max abs difference of the logits against PyTorch {check['max_abs_diff']:.2e} "
        f"on {check['compared_on']} (tolerance {check['tolerance']:.0e}); recorded in {folder / 'export.json'}"
    )
    if not check["ok"]:
        typer.secho(
            f"error: the exported {format} model differs from PyTorch by more than the tolerance", err=True, fg="red"
        )
        raise typer.Exit(1)


@app.command()
def serve(
    run: Path = typer.Argument(..., help="A run folder."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    max_batch: int = typer.Option(16, "--max-batch", help="Most requests one forward pass takes."),
    max_wait_ms: float = typer.Option(
        5.0, "--max-wait-ms", help="How long a request waits for others to share its batch."
    ),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Larger request bodies get 413."),
    top_k: int = typer.Option(3, "--top-k", help="Classes per answer unless the request asks (?top_k=N)."),
):
    """Serve a run's model over HTTP: POST /predict (an image), GET /health, and a page at / to try it."""
    try:
        from .serve import serve as run_server
    except ImportError as e:
        raise UserError(
            f"headstart serve needs fastapi, uvicorn and python-multipart ({e}): "
            "pip install fastapi uvicorn python-multipart"
        ) from e
    run_server(run, host, port, max_batch, max_wait_ms, max_upload_mb, top_k, log=typer.echo)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the backbones: which work offline (weights in an installed package) and their sizes."""
    import importlib.util

    from .backbones import list_backbones

    rows = []
    for spec in list_backbones():
        module = spec.package.replace("-", "_") if spec.package else None
        installed = bool(module and importlib.util.find_spec(module))
        rows.append(
            {
                "name": spec.name,
                "offline": spec.offline and installed,
                "params_millions": spec.params_millions,
                "package": spec.package,
                "description": spec.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="backbones (weights packages: headstart models --json)")
    table.add_column("name", no_wrap=True)
    table.add_column("offline", no_wrap=True)
    table.add_column("params (M)", no_wrap=True, justify="right")
    table.add_column("description")
    for r in rows:
        table.add_row(
            r["name"],
            "yes" if r["offline"] else "no",
            f"{r['params_millions']:.1f}" if r["params_millions"] else "?",
            r["description"],
        )
    table.add_row("timm:<name>", "no", "", "any timm model (hub download, or timm:local-dir:<folder>)")
    table.add_row("torchvision:<name>", "no", "", "torchvision classification models (download)")
    table.add_row(
        "hf:<repo or folder>", "no", "", "Hugging Face image models: ViT, DeiT, DINOv2 (download or local folder)"
    )
    Console().print(table)


@app.command()
def cache(
    clear: bool = typer.Option(False, "--clear", help="Delete every cache."),
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache folder (default $HEADSTART_HOME/features)."),
):
    """List the on-disk caches (decoded images; frozen layer groups' outputs) and their sizes, or delete them."""
    import shutil

    from .cache_folders import folder_size
    from .data.decoded_cache import INDEX, default_decoded_root
    from .training.feature_cache import META, default_cache_root

    def describe_features(path: Path) -> str:
        meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
        return (
            f"{meta.get('backbone', '?')}, {meta.get('images', '?')} images x {meta.get('views', '?')} views, "
            f"{meta.get('depth', '?')} groups"
        )

    def describe_decoded(path: Path) -> str:
        record = json.loads((path / INDEX).read_text()) if (path / INDEX).is_file() else {}
        return f"{len(record.get('images', []))} decoded images, {len(record.get('skipped', []))} undecodable"

    for title, root, describe in (
        ("feature caches", cache_dir or default_cache_root(), describe_features),
        ("decoded images", default_decoded_root(), describe_decoded),
    ):
        entries = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
        total = 0
        for path in entries:
            size = folder_size(path)
            total += size
            complete = "" if not path.name.startswith(".") else "  (incomplete)"
            typer.echo(f"{size / 2**20:9.1f} MiB  {path.name}  {describe(path)}{complete}")
            if clear:
                shutil.rmtree(path)
        typer.echo(
            f"{title}: {'deleted' if clear else 'total'} {total / 2**20:.1f} MiB in {len(entries)} caches under {root}"
        )


@app.command()
def demo(
    out: Optional[str] = typer.Option(None, help="Run folder (default runs/demo-<time>)."),
    minutes: Optional[float] = typer.Option(
        None,
        help="Minutes to choose (backbone, input side, strategy, epochs) and train in, as `train --minutes` "
        f"(default: train's, 10); 0: the fixed recipe (mobilenet_v2, discriminative, {DEMO_OVERRIDES['epochs']} "
        "epochs), however long.",
    ),
    epochs: Optional[int] = typer.Option(None, help="The fixed recipe with this many epochs (no choosing)."),
):
    """Train a model for the embedded ELPV solar-cell images (defective vs functional), as `headstart train` does
    with nothing named: chosen by measuring within 10 minutes."""
    from datetime import datetime

    from .api import DEFAULT_MINUTES, run_training
    from .config import config_from_dict
    from .runtime import distributed

    data = _embedded_elpv()
    if distributed.is_main():
        typer.echo(f"ELPV solar cells in {data} (CC BY-NC-SA 4.0, from package elpv-dataset)")
    out = out or distributed.from_main(
        lambda: f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}"
    )  # one folder for all processes
    minutes = DEFAULT_MINUTES if minutes is None else minutes
    fixed = bool(epochs) or not minutes or distributed.active()  # the search runs in one process
    values = DEMO_OVERRIDES if fixed else {k: DEMO_OVERRIDES[k] for k in DEMO_DATA_SETTINGS}
    values = {**values, "data": str(data), "out": out, **({"epochs": epochs} if epochs else {})}
    run_training(config_from_dict(values), minutes=0.0 if fixed else minutes)


def _embedded_elpv() -> Path:
    """The ELPV cells on disk; launched as several processes, the main one writes them first."""
    from .data.elpv import materialise_elpv
    from .runtime import distributed
    from .runtime.environment import resolve_device

    distributed.init(resolve_device("auto"))
    with distributed.main_first():
        return materialise_elpv()


def main() -> None:
    try:
        app(standalone_mode=True)
    except UserError as e:
        message = " ".join(str(e).split())  # always one line
        typer.secho(f"error: {message}", err=True, fg="red")
        sys.exit(2)


if __name__ == "__main__":
    main()
