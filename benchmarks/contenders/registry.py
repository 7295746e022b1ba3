"""The contenders that benchmarks/suite.py can run: per name, its script, the Python it runs under (a venv at the
repo root: .venv is headstart's own, the others are made by `make peers`, benchmarks/contenders/setup_envs.sh) and
the kinds of data set it takes. Plain values, standard library only."""

from __future__ import annotations

CONTENDERS = {
    "d2l_loop": {
        "script": "benchmarks/contenders/d2l_loop.py",
        "python": ".venv",
        "kinds": ("image",),
        "what": "the plain PyTorch fine-tuning loop of d2l's chapter 'Fine-Tuning' (SGD, 5 epochs, batch 128)",
    },
    "fastai_fine_tune": {
        "script": "benchmarks/contenders/fastai_fine_tune.py",
        "python": ".venv-fastai",
        "kinds": ("image",),
        "what": "fastai 2.8.12 vision_learner + fine_tune(4), the fastai book's chapter 2 recipe",
    },
    "hf_trainer": {
        "script": "benchmarks/contenders/hf_trainer.py",
        "python": ".venv",
        "kinds": ("text",),
        "what": "Hugging Face Trainer with the text-classification task guide's settings (2 epochs, lr 2e-5)",
    },
    "setfit_peer": {
        "script": "benchmarks/contenders/setfit_peer.py",
        "python": ".venv-setfit",
        "kinds": ("text",),
        "what": "SetFit 1.2.0 with its default TrainingArguments, max_steps=250 for the CPU",
    },
}


def python_path(name: str) -> str:
    """The interpreter of a contender, relative to the repo root."""
    return f"{CONTENDERS[name]['python']}/bin/python"
