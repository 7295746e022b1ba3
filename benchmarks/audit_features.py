"""Which features should the audit's label probe use on images? Layer groups, pooling, flips.

    .venv/bin/python benchmarks/audit_features.py

ELPV is planted as in benchmarks/audit.py (numpy seed 0: 5% of the labels flipped; the planted
copies left out), each cell resized to 224 px, and mobilenet_v2's features taken at several depths
(global average and max pooling of stage2, stage3, the first part of stage4 and its final 1280-wide
map) for the image and its horizontal and vertical flips, in bfloat16. Each feature set goes
through the audit's own probe (5-fold logistic regression on standardised features) at three
strengths, and cleanlab's ranking is scored on the flips as in audit.py. Writes
benchmarks/results/audit-features.json.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from audit import plant_elpv, ranking_summary
from common import write_results
from headstart.audit.labels import out_of_sample_probabilities
from headstart.backbones import create_backbone
from headstart.paths import headstart_home

RESULTS = Path(__file__).parent / "results"


def pooled_features(body, x: torch.Tensor) -> dict[str, torch.Tensor]:
    stage4 = body.groups["stage4"]
    out = {}
    h = body.run(x, 0, 3)
    out["stage2 avg"] = h.mean((2, 3))
    h = body.run(h, 3, 4)
    out["stage3 avg"], out["stage3 max"] = h.mean((2, 3)), h.amax((2, 3))
    h = stage4[0:4](h)
    out["stage4 blocks avg"], out["stage4 blocks max"] = h.mean((2, 3)), h.amax((2, 3))
    h = stage4[4](h)
    out["stage4 avg (the audit's)"], out["stage4 max"] = h.mean((2, 3)), h.amax((2, 3))
    return out


def main() -> None:
    work = headstart_home() / "bench-audit" / "elpv-features"
    shutil.rmtree(work, ignore_errors=True)
    planted = plant_elpv(work, 0)
    flipped = set(planted["flipped"])
    copies = {b for _, b in planted["copies"]} | {b for _, b in planted["leaks"]}
    paths = sorted(str(p) for p in work.glob("*/*/*.png") if str(p) not in copies)
    labels = np.array([Path(p).parent.name == "defective" for p in paths]).astype(int)
    backbone = create_backbone("mobilenet_v2")
    body = backbone.body.eval()
    mean = torch.tensor(backbone.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.preprocessing.std).view(1, 3, 1, 1)
    parts: dict[str, list] = {}
    started = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        for b in range(0, len(paths), 64):
            x = (
                torch.stack(
                    [
                        torch.from_numpy(
                            np.array(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR))
                        ).permute(2, 0, 1)
                        for p in paths[b : b + 64]
                    ]
                ).float()
                / 255
            )
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            views = [pooled_features(body, v) for v in (x, x.flip(3), x.flip(2))]
            for name in views[0]:
                parts.setdefault(name, []).append(torch.stack([v[name].float() for v in views]).numpy())
    features = {name: np.concatenate(p, 1) for name, p in parts.items()}  # (3 views, items, width)
    seconds = time.perf_counter() - started
    print(f"features of {len(paths)} cells x 3 views: {seconds:.0f} s", flush=True)
    names = list(features)
    sets = {
        "stage4 avg (the audit's)": features["stage4 avg (the audit's)"][0],
        "stage4 avg, image and flips averaged": features["stage4 avg (the audit's)"].mean(0),
        "stage4 max": features["stage4 max"][0],
        "stage4 avg + max": np.hstack([features["stage4 avg (the audit's)"][0], features["stage4 max"][0]]),
        "stage3 avg + max": np.hstack([features["stage3 avg"][0], features["stage3 max"][0]]),
        "stage4 blocks avg + max": np.hstack([features["stage4 blocks avg"][0], features["stage4 blocks max"][0]]),
        "all of the above": np.hstack([features[n][0] for n in names]),
        "all of the above, image and flips averaged": np.hstack([features[n].mean(0) for n in names]),
    }
    from cleanlab.rank import get_label_quality_scores

    rows = []
    for name, X in sets.items():
        for c in (0.001, 0.003, 0.01):
            p = out_of_sample_probabilities(X, labels, 5, 0, c)
            quality = get_label_quality_scores(labels, p)
            ranking = ranking_summary({path: float(q) for path, q in zip(paths, quality)}, flipped)
            rows.append(
                {
                    "features": name,
                    "width": int(X.shape[1]),
                    "probe_c": c,
                    "out_of_sample_accuracy": float((p.argmax(1) == labels).mean()),
                    "ranking": ranking,
                }
            )
            print(
                f"{name:45s} C={c:<6} accuracy {rows[-1]['out_of_sample_accuracy']:.3f}  recall at precision >= 0.5 "
                f"{ranking['max_recall_at_precision_0.5']:.3f}  average precision {ranking['average_precision']:.3f}",
                flush=True,
            )
    write_results(
        RESULTS / "audit-features.json",
        {
            "protocol": __doc__,
            "items": len(paths),
            "flipped": len(flipped),
            "feature_seconds_3_views": seconds,
            "results": rows,
        },
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
