"""`train(config)`: a whole fine-tuning run, top to bottom, and the run folder it leaves behind."""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed

from ..backbones import Backbone, create_backbone
from ..backbones.text_encoders import with_text_options
from ..config import TrainConfig
from ..data.decoded_cache import decode_images_cached
from ..data.images import decode_images
from ..data.pipeline import EpochOrder, Feed, image_feed
from ..data.sources import DataSplits, load_image_data
from ..data.text_pipeline import text_feed, tokenize_texts
from ..data.texts import load_text_data
from ..errors import UserError
from ..evaluation.metrics import classification_metrics, is_better, summary_line
from ..evaluation.plots import plot_confusion_matrix, plot_learning_curves
from ..head_init import init_head
from ..model import Classifier
from ..reporting.report import write_run_report
from ..strategies import Stage, apply_trainable, get_strategy, set_train_mode, trainable_parameter_count
from .averaging import averaged_weights, make_ema
from .budget import TIMED_BATCHES, WARMUP_BATCHES, plan_epochs
from .checkpoint import copy_atomic, load_weights, save_weights, write_json, write_text
from .environment import deterministic_mode, environment_record, resolve_device, resolve_precision
from . import distributed
from .distributed import is_main
from .feature_cache import CachedFeatures, cached_stage_inputs, frozen_prefix_depth
from .loop import EpochProgress, NonFiniteLoss, predict_logits, train_one_epoch, training_rate
from .optim import build_optimizer, build_scheduler
from .resume import RESUME, load_state, rng_state, run_fingerprint, save_state, seed_epoch

# the run's model (a copy of one of the other two), the best epoch by validation, the last epoch
MODEL, BEST, LAST = "model.safetensors", "best.safetensors", "last.safetensors"
TOKENIZER = "tokenizer"  # a text run's tokenizer files (save_pretrained)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    model: Classifier
    classes: list[str]


def default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    backbone = config.backbone.replace(":", "-").replace("/", "-")
    return Path("runs") / f"{stamp}-{backbone}-{config.strategy}"


def preprocessing_for(backbone: Backbone, config: TrainConfig):
    """The backbone's preprocessing with the run's overrides (image size and crop, or text length and pooling)."""
    if backbone.modality == "text":
        return with_text_options(backbone, config.max_length, config.pooling).preprocessing
    return backbone.preprocessing.at_size(config.image_size, config.crop_pct)


def load_data(config: TrainConfig, backbone: Backbone, prep, log) -> tuple[DataSplits, Feed]:
    """List and split the samples, then decode each once (images: pixels, texts: token ids); what
    cannot be read is skipped and named."""
    if backbone.modality == "text":
        splits, texts = load_text_data(config.data, config.text_column, config.label_column, config.val_fraction,
                                       config.test_fraction, config.data_split_seed())
        tokens, truncated = tokenize_texts({s.path: texts[s.path] for s in splits.all_samples()}, backbone.tokenizer,
                                           prep.max_length)
        feed = text_feed(tokens, backbone.tokenizer, prep, texts)
        if truncated:
            splits.notes.append(f"{len(truncated)} of {len(tokens)} texts were longer than {prep.max_length} tokens and "
                                f"were cut (max_length), e.g. {truncated[0]}")
            log(f"warning: {splits.notes[-1]}")
    else:
        splits = load_image_data(config.data, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                                 seed=config.data_split_seed())
        paths = [s.path for s in splits.all_samples()]
        if config.decoded_cache:
            images, undecodable = decode_images_cached(paths, prep.resize_size, log=log)
        else:
            images, undecodable = decode_images(paths, prep.resize_size)
        splits.skipped.extend(undecodable)
        splits = drop_undecodable(splits, images)
        feed = image_feed(images, prep, config.augment, config.crop_scale, config.hflip, config.vflip,
                          config.quarter_turns)
    for path, reason in splits.skipped:
        log(f"warning: skipped {path}: {reason}")
    return splits, feed


def timing_batches(splits: DataSplits, feed: Feed, config: TrainConfig):
    """Training batches for plan_epochs, the training samples repeated when there are too few."""
    needed = (WARMUP_BATCHES + TIMED_BATCHES) * config.batch_size
    samples = (splits.train * math.ceil(needed / len(splits.train)))[:needed]
    class_index = {c: i for i, c in enumerate(splits.classes)}
    return feed.loader(samples, class_index, config.batch_size, workers=0, train=True)


def add_lora(model: Classifier, config: TrainConfig) -> dict:
    """The lora strategy's adapters, added to the model; returns what config.json records of them."""
    targets = model.add_adapters(config.lora_rank, config.lora_alpha, config.lora_dropout,
                                 config.lora_targets.split(",") if config.lora_targets else None)
    return {"targets": targets, "rank": config.lora_rank, "alpha": config.lora_alpha, "merged": config.lora_merge}


def make_loaders(splits: DataSplits, feed: Feed, config: TrainConfig, workers: int):
    class_index = {c: i for i, c in enumerate(splits.classes)}
    order = feed.order(splits.train, config.batch_size)
    train_loader = feed.loader(splits.train, class_index, config.batch_size, workers, train=True, order=order, sharded=True)
    eval_loaders = {name: feed.loader(samples, class_index, config.batch_size, workers, sharded=True)
                    for name, samples in (("val", splits.val), ("test", splits.test)) if samples}
    if "val" not in eval_loaders:
        raise UserError("the validation split is empty: raise val_fraction or add a val/ folder")
    return train_loader, order, eval_loaders


def write_run_files(run_dir: Path, config: TrainConfig, classes, backbone: Backbone, groups: list[dict], prep,
                    head_init, strategy, stages, lora, splits: DataSplits, device: str, precision: str) -> None:
    """What a run folder holds from the start: config.json, skipped.csv, a text run's tokenizer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {
        "config": config.to_dict(),
        "classes": classes,
        "backbone": {"name": config.backbone, "pretrained": backbone.pretrained, "weights": backbone.weights_source,
                     "arch_config": backbone.arch_config, "width": backbone.width, "layer_groups": groups},
        "preprocessing": prep.to_dict(),
        "head_init": head_init,
        "strategy": {"name": strategy.name, "summary": strategy.summary, "stages": [s.to_dict() for s in stages],
                     "lora": lora},
        "data": splits.to_dict(),
        "environment": environment_record(device, precision),
    })
    write_text(run_dir / "skipped.csv", rows_to_csv(["path", "reason"], splits.skipped))
    if backbone.tokenizer is not None:  # a run folder carries its tokenizer: reloading it needs no network
        backbone.tokenizer.save_pretrained(run_dir / TOKENIZER)


def _quiet(*args, **kwargs) -> None:
    """The log of a process other than the main one."""


def drop_undecodable(splits: DataSplits, images: dict) -> DataSplits:
    keep = lambda samples: [s for s in samples if s.path in images]  # noqa: E731
    splits.train, splits.val, splits.test = keep(splits.train), keep(splits.val), keep(splits.test)
    missing = sorted(set(splits.classes) - {s.label for s in splits.train})
    if missing:
        raise UserError(f"no readable training image left for class {missing[0]!r} (see the skipped files)")
    return splits


def train(config: TrainConfig, log=print, resume: bool = False) -> RunResult:
    """A whole run. With resume=True, config.out names a run folder whose training stopped (killed,
    crashed): it goes on after the last epoch that run finished."""
    wall_start = time.perf_counter()
    strategy = get_strategy(config.strategy)
    if not config.data:
        raise UserError("no data given: pass an image folder, a CSV manifest, or (for a text backbone) a table of texts")
    set_seed(config.seed)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    distributed.init(device)  # launched as several processes (torchrun, accelerate launch): join them
    main = distributed.is_main()  # only the main process writes files and logs
    if not main:
        log = _quiet

    with distributed.main_first():  # it fills the caches (data set, decoded images); the others then read them
        backbone = create_backbone(config.backbone, pretrained=strategy.pretrained)
        config = config.with_kind_defaults(backbone.modality)
        if config.mixup and backbone.modality == "text":
            raise UserError("mixup blends pixels (or image features): it does not apply to texts; leave mixup at 0")
        prep = preprocessing_for(backbone, config)
        if config.exclude_audit:  # a wrong audit folder is refused before any decoding
            from ..audit.exclude import exclude_flagged, read_exclusions

            read_exclusions(config.exclude_audit, config.data)
        splits, feed = load_data(config, backbone, prep, log)
        if config.exclude_audit:
            exclude_flagged(splits, config.exclude_audit, config.data, log)
    classes = splits.classes
    workers = config.workers if config.workers is not None else (0 if device == "cpu" else 4)
    train_loader, order, eval_loaders = make_loaders(splits, feed, config, workers)

    # model
    model = Classifier(backbone, len(classes), config.dropout).to(memory_format=torch.channels_last)
    head_init = init_head(model.head, backbone, classes, config.head_init, log)  # report: head_init=source
    lora = add_lora(model, config) if strategy.name == "lora" else None
    stages = strategy.stages(model.groups_with_parameters(), config.epochs, config.strategy_options())
    accelerator = make_accelerator(device, precision, config.grad_accum, config.compile)
    normalize = feed.prepare.to(accelerator.device)
    if config.fit_minutes and not resume:  # a resumed run keeps the epochs it planned (config.json)
        plan = distributed.from_main(lambda: plan_epochs(
            model.to(accelerator.device), stages, normalize, timing_batches(splits, feed, config), len(splits.train),
            len(splits.val), accelerator, config, distributed.world_size()))
        log(plan.describe(config.fit_minutes, config.epochs))
        config = dataclasses.replace(config, epochs=plan.epochs)
        stages = strategy.stages(model.groups_with_parameters(), config.epochs, config.strategy_options())
    if distributed.active():  # device and precision only: fit() wraps the model in DDP stage by stage
        model = accelerator.prepare_model(model, evaluation_mode=True)
        train_loader = distributed.prepare_loader(accelerator, train_loader)
    else:
        model, train_loader = accelerator.prepare(model, train_loader)
    eval_loaders = {k: distributed.prepare_loader(accelerator, v) for k, v in eval_loaders.items()}

    run_dir = Path(config.out) if config.out else distributed.from_main(lambda: default_run_dir(config))
    fingerprint = run_fingerprint(config.to_dict(), [s.path for s in splits.train])
    state = distributed.from_main(lambda: load_state(run_dir / RESUME, fingerprint)) if resume else None
    # time lost after the last saved state is not counted: the next attempt does that work again
    earlier_attempts = state.get("wall_seconds", 0.0) if state else 0.0

    def wall_so_far() -> float:
        return earlier_attempts + time.perf_counter() - wall_start
    if main:
        write_run_files(run_dir, config, classes, backbone, model_groups(accelerator.unwrap_model(model)), prep,
                        head_init, strategy, stages, lora, splits, device, precision)
    log(f"run folder: {run_dir}")
    log(f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test {backbone.modality}s, "
        f"{len(classes)} classes ({splits.split_source} split), {len(splits.skipped)} skipped")
    size = f"{prep.max_length} tokens" if backbone.modality == "text" else f"{prep.input_size}px"
    log(f"backbone {config.backbone} ({backbone.weights_source}), {size}, strategy {strategy.name}, "
        f"{config.epochs} epochs, {device} {'float32' if precision == 'no' else precision}")
    if distributed.active():
        log(f"{distributed.world_size()} processes: each global batch of {config.batch_size} split between them "
            f"(about {config.batch_size / distributed.world_size():g} each), learning rates as configured")

    uncached = StageInputs(model, normalize, train_loader, order, eval_loaders["val"])
    net = accelerator.unwrap_model(model)

    def inputs_for(stage: Stage) -> StageInputs:
        # adapters inside the body change its output as they train: nothing below them can be cached
        depth = frozen_prefix_depth(net.group_names, stage.trainable) if config.feature_cache and not lora else 0
        if depth:
            cached = cached_stage_inputs(net, depth, stage.epochs, splits, feed, config, accelerator, log)
            if cached:
                return StageInputs(*cached, cached_depth=depth)
        return uncached

    with deterministic_mode(config.deterministic):
        history, best_epoch, stop_reason = fit(net, stages, inputs_for, accelerator, config, classes, run_dir, log,
                                               fingerprint, wall_so_far, state)

    # the run's model: the last epoch's weights, or the best by validation (early stopping, or a
    # run stopped by a diverging loss); evaluated in the run's precision and batch size, as
    # `headstart eval` and `predict` do (inference.LoadedRun.logits)
    use_best = config.final_model == "best" or (config.final_model == "auto" and config.patience > 0) \
        or stop_reason.startswith("stopped")
    model_epoch = best_epoch if use_best else len(history)
    net = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    if not main:  # the main process's weights arrive below; the adapters are folded in to take them
        if lora and config.lora_merge:
            net.merge_adapters()
    elif lora and config.lora_merge:  # the run's model: the adapters folded into the weights beside them
        load_weights(run_dir / (BEST if use_best else LAST), net)
        net.merge_adapters()
        save_weights(run_dir / MODEL, net)
    else:
        copy_atomic(run_dir / (BEST if use_best else LAST), run_dir / MODEL)
        load_weights(run_dir / MODEL, net)
    distributed.broadcast_weights(net)
    metrics: dict = {"model_epoch": model_epoch, "final_model": "best" if use_best else "last",
                     "best_epoch": best_epoch, "monitor": config.monitor, "stop_reason": stop_reason,
                     "resumed_after_epoch": state["epoch"] if state else None}
    for name, loader in eval_loaders.items():
        logits, labels = distributed.gather_rows(*predict_logits(net, normalize, loader, accelerator))
        metrics[name] = classification_metrics(logits, labels, classes)
        if name == "test" and main:
            write_predictions(run_dir / "test_predictions.csv", splits.test, logits, classes, feed.texts)
    report = "test" if "test" in metrics else "val"
    metrics["history"] = history
    metrics["wall_seconds"] = wall_so_far()
    metrics["train_images_per_s"] = training_rate(history)
    if not main:
        return RunResult(run_dir, metrics, net, classes)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "history.csv", rows_to_csv(list(history[0]), [list(h.values()) for h in history]) if history else "")
    plot_learning_curves(history, run_dir / "learning_curves.png")
    plot_confusion_matrix(metrics[report]["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                          f"{report} split, epoch {model_epoch} ({metrics['final_model']})")
    log(f"{report}: {summary_line(metrics[report])}")
    log(f"model (epoch {model_epoch}, {metrics['final_model']}): {run_dir / MODEL}; plots: {run_dir / 'learning_curves.png'}, {run_dir / 'confusion_matrix.png'}")
    if config.report:
        write_run_report(run_dir, log)  # report.html and report.json; a failure warns, the run stays whole
    return RunResult(run_dir, metrics, net, classes)


@dataclass
class StageInputs:
    """What a stage's epochs run: the whole model on normalised images, or, when its frozen
    prefix is cached, the model above the prefix on cached features."""
    model: torch.nn.Module
    prepare: torch.nn.Module  # batch -> model input
    train_loader: object
    order: EpochOrder  # the train loader's: planned at the start of every epoch
    val_loader: object
    cached_depth: int = 0


def fit(net, stages: list[Stage], inputs_for, accelerator: Accelerator, config: TrainConfig,
        classes: list[str], run_dir: Path, log, fingerprint: str, wall_so_far, resume: dict | None = None
        ) -> tuple[list[dict], int | None, str]:
    """Train stage by stage; after every epoch validate, save the last and (if better) the best
    weights and the state to resume from. With `resume` (a state saved by an earlier run of the
    same config) the epochs it finished are skipped and training goes on from the next one.
    `wall_so_far()` is the run's wall time until now, saved with the state.
    Returns the per-epoch history, the best epoch and why training ended."""
    history: list[dict] = []
    best_val, best_epoch, epoch = None, None, 0
    ema = make_ema(net, config.ema)

    def early_stop(epoch: int) -> str | None:
        if config.patience and epoch - best_epoch >= config.patience:
            return f"early stop: no better validation {config.monitor} for {config.patience} epochs"
        return None

    def save_resume(finished: int, stage_index: int, optimizer, scheduler, partial: dict | None = None) -> None:
        """The state to resume from after epoch `finished`, or inside the next one with `partial`."""
        if not is_main():
            return
        with resumable_on_failure(run_dir):
            save_state(run_dir / RESUME, fingerprint=fingerprint, epoch=finished, stage_index=stage_index,
                       history=history, best_val=best_val, best_epoch=best_epoch, model=net, optimizer=optimizer,
                       scheduler=scheduler, ema=ema, wall_seconds=wall_so_far(), partial=partial)

    if resume:
        history, best_val, best_epoch = resume["history"], resume["best_val"], resume["best_epoch"]
        net.load_state_dict(resume["model"])
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        partial = resume["partial"]
        log(f"resuming after epoch {resume['epoch']} of {config.epochs}"
            + (f", step {partial['progress']['steps']} of epoch {partial['epoch']}" if partial else ""))
        if not partial and early_stop(resume["epoch"]):
            return history, best_epoch, early_stop(resume["epoch"])
    pending = resume  # until the stage it stopped in has taken its state
    for stage_index, stage in enumerate(stages):
        if pending and epoch + stage.epochs <= pending["epoch"]:  # a partial epoch is pending["epoch"] + 1
            epoch += stage.epochs  # a stage the earlier run finished
            continue
        apply_trainable(net, stage.trainable)
        inputs = inputs_for(stage)
        train_model = distributed.wrap(inputs.model)  # several processes: DDP over this stage's trainable parameters
        steps_per_epoch = math.ceil(len(inputs.train_loader) / config.grad_accum)
        optimizer = accelerator.prepare(build_optimizer(net, stage, config.optimizer, config.weight_decay, config.momentum))
        scheduler = build_scheduler(optimizer, stage.epochs * steps_per_epoch, config.warmup, config.schedule)
        first, partial = 0, None
        if pending:
            if pending["epoch"] > epoch or pending["partial"]:  # it stopped inside this stage
                optimizer.load_state_dict(pending["optimizer"])
                scheduler.load_state_dict(pending["scheduler"])
            first, epoch, partial = pending["epoch"] - epoch, pending["epoch"], pending["partial"]
            pending = None
        trainable = trainable_parameter_count(net)
        for _ in range(first, stage.epochs):
            epoch += 1
            seed_epoch(config.seed, epoch)
            set_train_mode(net, stage.trainable, config.freeze_bn_stats)
            record = {"epoch": epoch, "stage": stage.name, "stage_index": stage_index, "trainable_params": trainable,
                      "cached_groups": inputs.cached_depth}
            if isinstance(inputs.train_loader.dataset, CachedFeatures):
                inputs.train_loader.dataset.select_views(epoch)
            progress = EpochProgress(**partial["progress"]) if partial else None
            inputs.order.plan(skip=progress.batches * config.batch_size if progress else 0)

            def checkpoint(progress: EpochProgress) -> None:  # inside this epoch, so its variables are current
                save_resume(epoch - 1, stage_index, optimizer, scheduler,
                            {"epoch": epoch, "progress": dataclasses.asdict(progress), "rng": rng_state()})

            try:
                record |= train_one_epoch(train_model, inputs.prepare, inputs.train_loader, optimizer, scheduler, accelerator,
                                          config.label_smoothing, f"epoch {epoch}/{config.epochs} [{stage.name}]",
                                          after_step=(lambda: ema.update_parameters(net)) if ema else None,
                                          progress=progress, rng_state=partial["rng"] if partial else None,
                                          checkpoint_steps=config.checkpoint_steps, checkpoint=checkpoint,
                                          mixup=config.mixup)
            except NonFiniteLoss as e:
                if best_epoch is None:
                    raise UserError(f"{e} before the first epoch ended; lower --lr (now {config.lr})") from e
                log(f"warning: {e}; keeping the best epoch so far ({best_epoch}); lower --lr")
                return history, best_epoch, f"stopped: {e}"
            partial = None
            distributed.broadcast_weights(net, buffers_only=True)  # BatchNorm statistics: the main process's
            with averaged_weights(net, ema):  # validate and save the average, when there is one
                val = classification_metrics(*distributed.gather_rows(
                    *predict_logits(inputs.model, inputs.prepare, inputs.val_loader, accelerator)), classes)
                record |= {"val_loss": val["loss"], "val_accuracy": val["accuracy"],
                           "val_balanced_accuracy": val["balanced_accuracy"], "val_macro_f1": val["macro_f1"]}
                history.append(record)
                improved = is_better(val, best_val, config.monitor)
                if improved:
                    best_val, best_epoch = val, epoch
                if is_main():
                    with resumable_on_failure(run_dir):
                        save_weights(run_dir / LAST, net)
                        if improved:
                            save_weights(run_dir / BEST, net)
            save_resume(epoch, stage_index, optimizer, scheduler)
            log(f"epoch {epoch:>2}/{config.epochs} {stage.name:<16} train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.3f} | val loss {val['loss']:.4f} acc {val['accuracy']:.3f} "
                f"| {record['train_images_per_s']:.1f} samples/s{'  *' if improved else ''}")
            if is_main():
                write_json(run_dir / "history.json", history)
            if early_stop(epoch):
                log(early_stop(epoch))
                return history, best_epoch, early_stop(epoch)
            # a time budget (compare --minutes): the training time of the epochs run so far, resumed ones included
            if config.time_budget_s and sum(h["train_seconds"] for h in history) >= config.time_budget_s:
                log(f"time budget: {config.time_budget_s:g} s of training reached after epoch {epoch}")
                return history, best_epoch, f"time budget: {config.time_budget_s:g} s of training reached after epoch {epoch}"
    return history, best_epoch, "completed"


@contextlib.contextmanager
def resumable_on_failure(run_dir: Path):
    """A checkpoint that cannot be written (a full disk) ends the run with one line that says how
    to go on: the files written before it are whole."""
    try:
        yield
    except UserError as e:
        if (run_dir / RESUME).is_file():
            raise UserError(f"{e}; after freeing space, go on with: headstart train --resume {run_dir}") from e
        raise


def make_accelerator(device: str, precision: str, grad_accum: int, compile: bool = False) -> Accelerator:
    """compile: the model that prepare() returns is compiled with torch.compile (inductor)."""
    # Accelerate keeps one state per process and refuses a second Accelerator with another
    # precision; start afresh (API users, several runs in one session, a comparison). In several
    # processes the process group stays: Accelerate finds it initialised and uses it again.
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=device == "cpu", mixed_precision=precision, gradient_accumulation_steps=grad_accum,
                       dynamo_backend="inductor" if compile else "no")


def model_groups(net: Classifier) -> list[dict]:
    return [{"name": name, "params": sum(p.numel() for p in module.parameters())} for name, module in net.layer_groups()]


def rows_to_csv(header: list[str], rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_predictions(path: Path, samples, logits: torch.Tensor, classes: list[str], texts: dict | None = None) -> None:
    """One row per sample: where it is, its label, the predicted class and its probability (and, for texts, the text)."""
    probs = logits.softmax(1)
    rows = [[s.path, s.label, classes[int(p.argmax())], f"{float(p.max()):.4f}"] + ([texts[s.path]] if texts else [])
            for s, p in zip(samples, probs)]
    write_text(path, rows_to_csv(["path", "label", "predicted", "probability"] + (["text"] if texts else []), rows))
