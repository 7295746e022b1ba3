"""The fit loop: stage by stage, epoch by epoch: train, validate, checkpoint, stop."""

from __future__ import annotations

from dataclasses import dataclass

from ..evaluation.metrics import classification_metrics
from ..runtime import distributed
from ..strategies import apply_trainable, set_train_mode, trainable_parameter_count
from .averaging import averaged_weights, make_ema
from .checkpoints import Checkpoints
from .epoch import EpochOptions, EpochProgress, predict_logits, train_one_epoch
from .exact_head import fit_head_on_cache, fits_exactly
from .feature_cache import CachedFeatures
from .optim import stage_optimizer
from .resume import seed_epoch
from .setup import Setup
from .stopping import BestEpoch, NonFiniteLoss, diverged, first_reason, stopping_rules


@dataclass
class Fitted:
    history: list[dict]  # one record per epoch
    best: BestEpoch  # by validation
    stop_reason: str  # "completed", or why training stopped early


def fit(run: Setup) -> Fitted:
    """Train the run's stages; after every epoch validate, save its weights and the state to resume
    from, and stop when a stopping rule says so. A resumed run starts where its last attempt
    saved its state, and goes on exactly as the uninterrupted run would have."""
    config, net, log, start = run.config, run.net, run.log, run.start
    ema = make_ema(net, config.ema)
    history, best = start.restore(net, ema, config.monitor)
    rules = stopping_rules(config)
    saved = Checkpoints(run, ema, history, best)
    if start.pending:
        log(start.describe(config.epochs))
        reason = None if start.partial else first_reason(rules, start.epoch, history, best)
        if reason:
            return Fitted(history, best, reason)
    epoch = 0
    for stage_index, stage in enumerate(run.stages):
        if start.skips(epoch, stage):
            epoch += stage.epochs
            continue
        apply_trainable(net, stage.trainable)
        inputs = run.inputs_for(stage)
        model = distributed.wrap(inputs.model)  # several processes: DDP over this stage's trainable parameters
        optimizer, scheduler = stage_optimizer(net, stage, len(inputs.train_loader), config, run.accelerator)
        done, partial = start.enter(epoch, optimizer, scheduler)
        epoch += done
        about_stage = {
            "stage": stage.name,
            "stage_index": stage_index,
            "trainable_params": trainable_parameter_count(net),
        }
        # a head fitted exactly on the cached features: one solve stands for the stage's epochs
        exact = fits_exactly(config, stage, inputs.cached_depth, net.group_names)
        for _ in range(done, 1 if exact else stage.epochs):
            epoch += stage.epochs if exact else 1
            seed_epoch(config.seed, epoch)
            set_train_mode(net, stage.trainable, config.freeze_bn_stats)
            if isinstance(inputs.train_loader.dataset, CachedFeatures):
                inputs.train_loader.dataset.select_views(epoch)
            progress = EpochProgress(**partial["progress"]) if partial else None
            inputs.order.plan(skip=progress.batches * config.batch_size if progress else 0)
            options = EpochOptions(
                f"epoch {epoch}/{config.epochs} [{stage.name}]",
                config.label_smoothing,
                config.mixup,
                after_step=(lambda: ema.update_parameters(net)) if ema else None,
                checkpoint_steps=config.checkpoint_steps,
                checkpoint=lambda inside, e=epoch: saved.state(e - 1, stage_index, optimizer, scheduler, inside),
                progress=progress,
                rng_state=partial["rng"] if partial else None,
            )
            try:
                record = {"epoch": epoch, **about_stage, "cached_groups": inputs.cached_depth} | (
                    fit_head_on_cache(net, inputs.train_loader.dataset, inputs.val_loader.dataset, len(run.classes))
                    if exact
                    else train_one_epoch(
                        model, inputs.prepare, inputs.train_loader, optimizer, scheduler, run.accelerator, options
                    )
                )
            except NonFiniteLoss as e:
                return Fitted(history, best, diverged(e, best, config.lr, log))
            partial = None
            distributed.broadcast_weights(net, buffers_only=True)  # BatchNorm statistics: the main process's
            with averaged_weights(net, ema):  # validate and save the average, when there is one
                val = validate(inputs, run)
                record |= {f"val_{k}": val[k] for k in ("loss", "accuracy", "balanced_accuracy", "macro_f1")}
                history.append(record)
                improved = best.update(val, epoch)
                saved.epoch_weights(improved)
            saved.state(epoch, stage_index, optimizer, scheduler)
            log(epoch_line(record, config.epochs, improved))
            reason = first_reason(rules, epoch, history, best)
            if reason:
                log(reason)
                return Fitted(history, best, reason)
    return Fitted(history, best, "completed")


def validate(inputs, run: Setup) -> dict:
    """The validation split's metrics, its rows gathered from every process."""
    logits, labels = predict_logits(inputs.model, inputs.prepare, inputs.val_loader, run.accelerator)
    return classification_metrics(*distributed.gather_rows(logits, labels), run.classes)


def epoch_line(record: dict, epochs: int, improved: bool) -> str:
    return (
        f"epoch {record['epoch']:>2}/{epochs} {record['stage']:<16} train loss {record['train_loss']:.4f} "
        f"acc {record['train_accuracy']:.3f} | val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.3f} "
        f"| {record['train_images_per_s']:.1f} samples/s{'  *' if improved else ''}"
    )
