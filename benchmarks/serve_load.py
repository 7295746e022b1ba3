"""Latency and throughput of `headstart serve` under concurrent clients, with and without batching,
for an image model and a text model.

    .venv/bin/python benchmarks/serve_load.py [--run RUN] [--text-run RUN] [--requests 200] [--clients 1,8]

Starts `headstart serve` as a user would (its own process, loopback, a free port) once per server
setting and model, and sends requests from N client threads, each sending its next request when its
last one is answered. Latency is per request, as the client sees it (connect, upload, decode or
tokenize, queue, forward pass, answer).

- Images: real ELPV cells (300x300 PNG, as the bytes of the body, Content-Type image/png). Without
  --run, it first trains a 1-epoch `head` run of mobilenet_v2 at its default 224 px on 24 cells.
- Texts: real Rotten Tomatoes snippets, each as JSON {"text": ...}, in the file's order. Without
  --text-run, it first trains a 1-epoch `head` run of minilm-l6 (its default max_length) on 48 snippets.

Writes benchmarks/results/serve_load.json (the image measurements at the top level, the text ones
under "text") and prints Markdown tables.
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
from headstart.data.rotten_tomatoes import load_reviews, materialise_rotten_tomatoes
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


def load(url: str, bodies: list[bytes], content_type: str, requests: int, clients: int) -> dict:
    def one(i: int) -> tuple[float, int]:
        request = urllib.request.Request(
            f"{url}/predict", data=bodies[i % len(bodies)], headers={"Content-Type": content_type}
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


def measure(run: Path, bodies: list[bytes], content_type: str, requests: int, clients: list[int]) -> list[dict]:
    measurements = []
    for name, options in SERVERS.items():
        server, url = start_server(run, options)
        try:
            load(url, bodies, content_type, 16, 4)  # warm-up: first passes allocate, threads start
            for n in clients:
                measurements.append(
                    {
                        "server": name,
                        "load_average_before": round(os.getloadavg()[0], 2),
                        **load(url, bodies, content_type, requests, n),
                    }
                )
                print(json.dumps(measurements[-1]), flush=True)
        finally:
            server.terminate()
            server.wait(30)
    return measurements


def markdown(measurements: list[dict]) -> str:
    lines = [
        "| server | clients | requests | errors | p50 (ms) | p95 (ms) | requests/s | mean batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {m['server']} | {m['clients']} | {m['requests']} | {m['errors']} | {m['latency_ms']['p50']} "
            f"| {m['latency_ms']['p95']} | {m['requests_per_second']} | {m['mean_batch']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="An image run folder (default: train a tiny one).")
    parser.add_argument("--text-run", type=Path, help="A text run folder (default: train a tiny one).")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    data = materialise_elpv(RUNS / "data", per_class=12, seed=0)
    run = (
        args.run
        or headstart.train(str(data), backbone="mobilenet_v2", strategy="head", epochs=1, out=str(RUNS / "run")).run_dir
    )
    images = [p.read_bytes() for p in sorted(data.glob("*/*.png"))]
    record = json.loads((Path(run) / "config.json").read_text())
    measurements = measure(Path(run), images, "image/png", args.requests, clients)

    reviews = materialise_rotten_tomatoes(RUNS / "data", per_class=24, seed=0)
    text_run = (
        args.text_run
        or headstart.train(
            str(reviews), backbone="minilm-l6", strategy="head", epochs=1, out=str(RUNS / "text-run")
        ).run_dir
    )
    texts = [text for text, _ in load_reviews()[:500]]
    text_record = json.loads((Path(text_run) / "config.json").read_text())
    text_measurements = measure(
        Path(text_run), [json.dumps({"text": t}).encode() for t in texts], "application/json", args.requests, clients
    )

    table, text_table = markdown(measurements), markdown(text_measurements)
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
            "text": {
                "benchmark": "headstart serve under concurrent clients, real Rotten Tomatoes snippets as JSON "
                f'{{"text": ...}} (the first {len(texts)} of the file, in its order)',
                "model": {
                    "backbone": text_record["backbone"]["name"],
                    "max_length": text_record["preprocessing"]["max_length"],
                    "precision": text_record["environment"]["mixed_precision"],
                },
                "measurements": text_measurements,
                "table_markdown": text_table,
            },
        },
    )
    print(table)
    print(text_table)


if __name__ == "__main__":
    main()
