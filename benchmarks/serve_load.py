"""Latency and throughput of `headstart serve` under concurrent clients, with and without batching.

    .venv/bin/python benchmarks/serve_load.py [--run RUN] [--requests 200] [--clients 1,8]

Starts `headstart serve` as a user would (its own process, loopback, a free port) once per server
setting, and sends real ELPV cells (300x300 PNG, as the bytes of the body, Content-Type image/png)
from N client threads, each sending its next request when its last one is answered. Latency is per
request, as the client sees it (connect, upload, decode, queue, forward pass, answer). Without
--run, it first trains a 1-epoch `head` run of mobilenet_v2 at its default 224 px on 24 cells.
Writes benchmarks/results/serve_load.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import headstart
from common import write_results
from headstart.data import materialise_elpv
from headstart.serve import listen

RESULTS = Path(__file__).parent / "results"
RUNS = Path("runs") / "benchmark" / "serve_load"
SERVERS = {
    "batching (max-batch 16, max-wait 5 ms)": ["--max-batch", "16", "--max-wait-ms", "5"],
    "no batching (max-batch 1)": ["--max-batch", "1", "--max-wait-ms", "0"],
}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def start_server(run: Path, options: list[str]) -> tuple[subprocess.Popen, str]:
    probe = listen("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen(
        [sys.executable, "-m", "headstart.cli", "serve", str(run), "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            get_json(f"{url}/health")
            return server, url
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped: {server.stderr.read()}") from None
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start within 60 s")


def load(url: str, images: list[bytes], requests: int, clients: int) -> dict:
    def one(i: int) -> tuple[float, int]:
        request = urllib.request.Request(
            f"{url}/predict", data=images[i % len(images)], headers={"Content-Type": "image/png"}
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = 0
        return time.perf_counter() - start, status

    before = get_json(f"{url}/health")["stats"]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    after = get_json(f"{url}/health")["stats"]
    latencies = sorted(1000 * t for t, _ in results)
    batches = after["batches"] - before["batches"]
    return {
        "requests": requests,
        "clients": clients,
        "errors": sum(status != 200 for _, status in results),
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(requests / wall, 1),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1),
            "p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
            "max": round(latencies[-1], 1),
            "mean": round(statistics.fmean(latencies), 1),
        },
        "forward_passes": batches,
        "mean_batch": round((after["requests"] - before["requests"]) / max(batches, 1), 2),
        "largest_batch": after["largest_batch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="A run folder (default: train a tiny one).")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = parser.parse_args()

    data = materialise_elpv(RUNS / "data", per_class=12, seed=0)
    run = (
        args.run
        or headstart.train(str(data), backbone="mobilenet_v2", strategy="head", epochs=1, out=str(RUNS / "run")).run_dir
    )
    images = [p.read_bytes() for p in sorted(data.glob("*/*.png"))]
    record = json.loads((Path(run) / "config.json").read_text())
    measurements = []
    for name, options in SERVERS.items():
        server, url = start_server(Path(run), options)
        try:
            load(url, images, 16, 4)  # warm-up: first passes allocate, threads start
            for clients in [int(c) for c in args.clients.split(",")]:
                measurements.append(
                    {
                        "server": name,
                        "load_average_before": round(os.getloadavg()[0], 2),
                        **load(url, images, args.requests, clients),
                    }
                )
                print(json.dumps(measurements[-1]), flush=True)
        finally:
            server.terminate()
            server.wait(30)

    lines = [
        "| server | clients | requests | errors | p50 (ms) | p95 (ms) | requests/s | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {m['server']} | {m['clients']} | {m['requests']} | {m['errors']} | {m['latency_ms']['p50']} "
            f"| {m['latency_ms']['p95']} | {m['requests_per_second']} | {m['mean_batch']} |"
        )
    table = "\n".join(lines)
    write_results(
        args.out,
        {
            "benchmark": "headstart serve under concurrent clients, real ELPV cells (300x300 PNG)",
            "model": {
                "backbone": record["backbone"]["name"],
                "input_size": record["preprocessing"]["input_size"],
                "precision": record["environment"]["mixed_precision"],
            },
            "measurements": measurements,
            "table_markdown": table,
        },
    )
    print(table)


if __name__ == "__main__":
    main()
