"""The suite's contenders: which script, under which Python, on which kinds of data, with how many seeds.

Plain values, standard library only (the suite and the docs' tables read them). `script` is in this folder;
`python` is a venv folder at the repository's root: .venv is headstart's own; the peers that must never
become headstart's dependencies have theirs (`make peers`, benchmarks/contenders/setup_envs.sh). `seeds`:
training seeds run per data set. `fine_tunes`: a peer that fine-tunes a pretrained model, whose wall time
headstart's must not exceed.
"""

from __future__ import annotations

CONTENDERS = {
    "headstart": {
        "script": "headstart_default.py",
        "python": ".venv",
        "kinds": ("image", "text"),
        "seeds": (0, 1, 2),
        "fine_tunes": True,
        "about": "headstart train DATA, nothing set: backbone, input side, strategy and epochs chosen by measuring "
        "within 10 minutes",
    },
    "headstart-fixed": {
        "script": "headstart_default.py",
        "args": ("--minutes", "0"),
        "python": ".venv",
        "kinds": ("image", "text"),
        "seeds": (0, 1, 2),
        "fine_tunes": True,
        "about": "headstart train DATA --minutes 0: the fixed recipe (mobilenet_v2 or minilm-l6, discriminative, "
        "the kind's epochs)",
    },
    "pixels-logistic": {
        "script": "pixels.py",
        "args": ("--model", "logistic"),
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "fine_tunes": False,
        "about": "logistic regression on 32 px pixels (the reference every image run reports)",
    },
    "pixels-rbf-svm": {
        "script": "pixels.py",
        "args": ("--model", "rbf-svm"),
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "fine_tunes": False,
        "about": "RBF SVM on 32 px pixels, scikit-learn's defaults",
    },
    "frozen-probe": {
        "script": "frozen_probe.py",
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "fine_tunes": False,
        "about": "logistic regression on the frozen ImageNet mobilenet_v2's pooled features, C by validation",
    },
    "d2l": {
        "script": "d2l_loop.py",
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "fine_tunes": True,
        "about": "the plain PyTorch fine-tuning loop of d2l's chapter 'Fine-Tuning' (SGD, 5 epochs, batch 128, 224 px)",
    },
    "fastai": {
        "script": "fastai_fine_tune.py",
        "python": ".venv-fastai",
        "kinds": ("image",),
        "seeds": (0,),
        "fine_tunes": True,
        "about": "fastai 2.8.12 vision_learner + fine_tune(4), the fastai book's chapter 2 recipe, same backbone",
    },
    "tfidf-svm": {
        "script": "tfidf_svm.py",
        "python": ".venv",
        "kinds": ("text",),
        "seeds": (0,),
        "fine_tunes": False,
        "about": "TF-IDF (words and word pairs) + linear SVM (the reference every text run reports)",
    },
    "hf-trainer": {
        "script": "hf_trainer.py",
        "python": ".venv",
        "kinds": ("text",),
        "seeds": (0,),
        "fine_tunes": True,
        "about": "Hugging Face Trainer, the text-classification task guide's settings (2 epochs, lr 2e-5), same encoder",
    },
    "setfit": {
        "script": "setfit_peer.py",
        "python": ".venv-setfit",
        "kinds": ("text",),
        "seeds": (0,),
        "fine_tunes": True,
        "about": "SetFit 1.2.0 on all-MiniLM-L6-v2, its default TrainingArguments, max_steps 250 for the CPU",
    },
}


def python_path(name: str) -> str:
    """The interpreter of a contender, relative to the repository's root."""
    return f"{CONTENDERS[name]['python']}/bin/python"
