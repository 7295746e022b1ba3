"""The suite's contenders: which script, under which Python, on which kinds of data, with how many seeds.

Plain values (the suite and the docs' tables read them). `python` is a venv folder at the repository's
root: .venv is headstart's own; the peers that must never become headstart's dependencies have theirs
(benchmarks/contenders/setup_envs.sh makes them). `seeds`: training seeds run per data set.
"""

CONTENDERS = {
    "headstart": {
        "script": "headstart_default.py",
        "python": ".venv",
        "kinds": ("image", "text"),
        "seeds": (0, 1, 2),
        "about": "headstart train DATA, nothing set (the default for the data's kind)",
    },
    "pixels-logistic": {
        "script": "pixels.py",
        "args": ("--model", "logistic"),
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "about": "logistic regression on 32 px pixels (the reference every image run reports)",
    },
    "pixels-rbf-svm": {
        "script": "pixels.py",
        "args": ("--model", "rbf-svm"),
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "about": "RBF SVM on 32 px pixels, scikit-learn's defaults",
    },
    "frozen-probe": {
        "script": "frozen_probe.py",
        "python": ".venv",
        "kinds": ("image",),
        "seeds": (0,),
        "about": "logistic regression on the frozen ImageNet mobilenet_v2's pooled features",
    },
    "tfidf-svm": {
        "script": "tfidf_svm.py",
        "python": ".venv",
        "kinds": ("text",),
        "seeds": (0,),
        "about": "TF-IDF (words and word pairs) + linear SVM (the reference every text run reports)",
    },
}
