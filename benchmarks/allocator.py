"""Training steps with and without headstart's allocator setting (headstart/runtime/allocator.py).

    .venv/bin/python benchmarks/allocator.py [--rounds 3]   (about 5 minutes)

Each measurement is a fresh process (the setting is process-wide), alternating with and without, for
--rounds rounds:
- image: full fine-tuning steps of mobilenet_v2 at 224 px, batch 32, bfloat16 autocast where the CPU
  has it (as a run trains): the median of 8 steps after 2 untimed;
- text: full fine-tuning steps of all-MiniLM-L6-v2, batch 32, at 12 padded lengths 40..128 (a run's
  length-bucketed batches vary so): the first pass over the lengths and a second over the same ones,
  as milliseconds per token-column (a step's seconds over its padded length).
Peak resident memory of each process is recorded. Writes benchmarks/results/allocator.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
LENGTHS = list(range(40, 129, 8))


def image_steps() -> dict:
    import torch

    from headstart.backbones import create_backbone

    body = create_backbone("mobilenet_v2").body
    net = torch.nn.Sequential(body, torch.nn.Linear(body(torch.zeros(1, 3, 64, 64)).shape[1], 10))
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 224, 224).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,))
    optimizer = torch.optim.SGD(net.parameters(), 0.01, momentum=0.9)
    times = [train_step(net, optimizer, x, y) for _ in range(10)]
    return {"step_seconds": round(statistics.median(times[2:]), 4)}


def text_steps() -> dict:
    import torch

    from headstart.backbones import create_backbone
    from headstart.backbones.text_encoders import Tokens

    torch.manual_seed(0)
    body = create_backbone("minilm-l6").body
    optimizer = torch.optim.AdamW(body.parameters(), 1e-5)
    batches = []
    for length in LENGTHS:
        ids = torch.randint(1000, 20000, (32, length))
        batches.append(Tokens(ids, torch.ones_like(ids)))
    labels = torch.zeros(32, dtype=torch.long)
    train_step(body, optimizer, batches[0], labels)  # allocate the optimizer's state
    first = [train_step(body, optimizer, b, labels) / b.ids.shape[1] for b in batches]
    second = [train_step(body, optimizer, b, labels) / b.ids.shape[1] for b in batches]
    return {
        "first_pass_ms_per_token_column": round(1e3 * statistics.median(first), 3),
        "second_pass_ms_per_token_column": round(1e3 * statistics.median(second), 3),
    }


def train_step(net, optimizer, x, y) -> float:
    import torch

    from headstart.runtime.environment import cpu_supports_bf16

    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_supports_bf16()):
        out = net(x)
    out = out if torch.is_tensor(out) else out[0]
    if out.dim() == 3:  # a text body's token outputs: their mean stands in for the head
        out = out.mean(1)
    torch.nn.functional.cross_entropy(out.float(), y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def child(case: str, setting: str) -> None:
    import contextlib

    from headstart.runtime.allocator import memory_reused_for_training

    context = memory_reused_for_training() if setting == "on" else contextlib.nullcontext()
    with context:
        measured = image_steps() if case == "image" else text_steps()
    measured["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(measured))


def measure(case: str, setting: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", case, setting], capture_output=True, text=True, timeout=900
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, str(Path(__file__).parent))
    from common import write_results
    from headstart.runtime.allocator import glibc

    if glibc() is None:
        raise SystemExit("the allocator setting is glibc's: run this on Linux")
    rounds = {case: {"on": [], "off": []} for case in ("image", "text")}
    for r in range(args.rounds):
        for case in rounds:
            for setting in ("on", "off") if r % 2 == 0 else ("off", "on"):
                rounds[case][setting].append(measure(case, setting))
                print(case, setting, rounds[case][setting][-1], flush=True)
    summary = {}
    for case, by_setting in rounds.items():
        summary[case] = {}
        for setting, measured in by_setting.items():
            summary[case][setting] = {key: statistics.fmean(m[key] for m in measured) for key in measured[0]}
        key = "step_seconds" if case == "image" else "first_pass_ms_per_token_column"
        summary[case]["speed_up"] = round(summary[case]["off"][key] / summary[case]["on"][key], 3)
        if case == "text":
            second = "second_pass_ms_per_token_column"
            summary[case]["speed_up_second_pass"] = round(summary[case]["off"][second] / summary[case]["on"][second], 3)
        summary[case]["peak_rss_ratio"] = round(
            summary[case]["on"]["peak_rss_mib"] / summary[case]["off"]["peak_rss_mib"], 3
        )
    write_results(RESULTS / "allocator.json", {"rounds": rounds, "summary": summary, "glibc": platform.libc_ver()[1]})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
