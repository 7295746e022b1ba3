"""`headstart serve` over real HTTP on loopback (uvicorn in a thread, a tiny real run, real ELPV
images): predictions equal `headstart.predict`, 413 and 400 refusals, concurrent load with shared
batches, the port-in-use error, and the page driven in headless Chromium."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

import headstart
from headstart.serve import create_app, listen, running_server
from headstart.serve.batching import Batcher
from helpers import headless_chromium
from helpers import http_health as health
from helpers import http_send as send

TINY = dict(image_size=64, batch_size=8, val_fraction=0.2, test_fraction=0.25, report=False)
LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def run_dir(elpv, tmp_path_factory):
    # float32, so the server's batches and predict's batches give the same numbers to 1e-6
    return headstart.train(
        str(elpv),
        strategy="head",
        epochs=1,
        precision="fp32",
        out=str(tmp_path_factory.mktemp("runs") / "tiny"),
        **TINY,
    ).run_dir


@pytest.fixture(scope="module")
def url(run_dir):
    # a 20 ms wait so that concurrent requests reliably share batches on a busy 2-core machine
    with running_server(create_app(run_dir, max_batch=8, max_wait_ms=20, max_upload_mb=LIMIT_MB)) as base:
        yield base


@pytest.fixture(scope="module")
def cells(elpv) -> list[Path]:
    return sorted(elpv.glob("defective/*.png"))[:4] + sorted(elpv.glob("functional/*.png"))[:4]


def post_file(url: str, name: str, data: bytes, top_k: int | None = None) -> tuple[int, dict]:
    """POST /predict as a browser form does (multipart/form-data, the field `file`)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    query = f"?top_k={top_k}" if top_k else ""
    request = urllib.request.Request(
        f"{url}/predict{query}", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return send(request)


def test_health_describes_the_run(url, run_dir):
    h = health(url)
    assert h["status"] == "ok" and h["run"] == str(run_dir) and h["backbone"] == "mobilenet_v2"
    assert h["classes"] == ["defective", "functional"] and h["inputs"] == ["image"]
    assert h["max_upload_bytes"] == int(LIMIT_MB * 2**20)


def test_predictions_over_http_equal_headstart_predict(url, run_dir, cells):
    expected, skipped = headstart.predict(run_dir, [str(p) for p in cells], top_k=2)
    assert not skipped and len(expected) == len(cells)
    for path, row in zip(cells, expected):
        status, answer = post_file(url, path.name, path.read_bytes(), top_k=2)
        assert status == 200, answer
        assert [t["label"] for t in answer["top"]] == [t["label"] for t in row["top"]], path
        assert [t["probability"] for t in answer["top"]] == pytest.approx(
            [t["probability"] for t in row["top"]], abs=1e-4
        )
    # the bytes as the body itself (curl --data-binary) give the same answer
    raw = urllib.request.Request(
        f"{url}/predict?top_k=2", data=cells[0].read_bytes(), headers={"Content-Type": "image/png"}
    )
    status, answer = send(raw)
    assert status == 200 and answer["top"][0]["label"] == expected[0]["top"][0]["label"]


def test_oversized_upload_gets_413(url, cells):
    """A real image over the limit (a cell scaled up, with noise so PNG cannot compress it), sent whole."""
    rng = np.random.default_rng(0)
    big = np.asarray(Image.open(cells[0]).convert("RGB").resize((900, 900)), dtype=np.int16)
    big = np.clip(big + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")
    assert buffer.tell() > LIMIT_MB * 2**20
    status, answer = post_file(url, "big.png", buffer.getvalue())
    assert status == 413 and "upload too large" in answer["error"]
    # the same bytes chunked, with no Content-Length: counted as they arrive
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    data = buffer.getvalue()
    connection.request(
        "POST",
        "/predict",
        body=(data[i : i + 65536] for i in range(0, len(data), 65536)),
        headers={"Content-Type": "image/png"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 413 and "upload too large" in json.load(response)["error"]
    connection.close()


def test_413_comes_from_the_content_length_before_the_body_is_read(url):
    """Only the headers are sent: a server that waited for the body would time out here."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(100 * 2**20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "limit" in json.load(response)["error"]
    connection.close()


def test_what_is_not_an_image_gets_400_with_the_reason(url, cells):
    status, answer = post_file(url, "notes.txt", b"these are my notes, not a picture")
    assert status == 400 and answer["error"].startswith("notes.txt: not an image"), answer
    status, answer = post_file(url, "cut.png", cells[0].read_bytes()[:400])
    assert status == 400 and "truncated" in answer["error"], answer
    status, answer = post_file(url, "empty.png", b"")
    assert status == 400 and "empty" in answer["error"], answer
    text = urllib.request.Request(
        f"{url}/predict",
        data=json.dumps({"text": "a cracked cell"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    status, answer = send(text)
    assert status == 400 and "text input is not supported" in answer["error"], answer
    assert health(url)["status"] == "ok"


def test_200_requests_from_8_concurrent_clients_all_answered_in_shared_batches(url, run_dir, cells):
    expected = {
        Path(r["path"]).name: r["top"][0]["label"] for r in headstart.predict(run_dir, [str(p) for p in cells])[0]
    }
    files = [(p.name, p.read_bytes()) for p in cells]
    before = health(url)["stats"]

    def one(i):
        name, data = files[i % len(files)]
        status, answer = post_file(url, name, data)
        return status, name, answer

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    errors = [(status, answer) for status, _, answer in results if status != 200]
    assert not errors, errors[:3]
    assert all(answer["top"][0]["label"] == expected[name] for _, name, answer in results)
    after = health(url)["stats"]
    assert after["requests"] - before["requests"] == 200
    assert after["batches"] - before["batches"] < 200  # some requests shared a forward pass
    assert after["largest_batch"] > 1 and after["requests_in_shared_batches"] > before["requests_in_shared_batches"]


def test_batcher_waits_only_for_requests_on_their_way():
    """The policy itself, with a 2 s max wait: a lone input runs at once; an input announced
    before the first is queued joins its batch; max_batch caps a batch."""
    seen = []

    def forward(batch):
        seen.append(len(batch))
        return batch * 2

    async def scenario():
        batcher = Batcher(forward, max_batch=2, max_wait=2.0)
        batcher.start()
        try:
            start = time.perf_counter()
            assert (await batcher.submit(torch.ones(3))).tolist() == [2, 2, 2]
            alone = time.perf_counter() - start

            async def late():
                with batcher.announce():
                    await asyncio.sleep(0.2)  # still being decoded when the first is queued
                return await batcher.submit(torch.full((3,), 2.0))

            second = asyncio.create_task(late())
            await asyncio.sleep(0.05)
            together = await asyncio.gather(batcher.submit(torch.zeros(3)), second)
            assert [t.tolist() for t in together] == [[0, 0, 0], [4, 4, 4]]
            await asyncio.gather(*(batcher.submit(torch.zeros(3)) for _ in range(3)))
            return alone, batcher.stats
        finally:
            await batcher.stop()

    alone, stats = asyncio.run(scenario())
    assert alone < 1.0 and seen == [1, 2, 2, 1]
    assert stats == {"requests": 6, "batches": 4, "largest_batch": 2, "requests_in_shared_batches": 4}


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "headstart.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )


@pytest.mark.slow
def test_serve_port_in_use_and_missing_run_are_one_line_errors(url, run_dir, tmp_path):
    taken = listen("127.0.0.1", 0)
    try:
        taken.listen()
        port = taken.getsockname()[1]
        for result, fragment in (
            (cli("serve", run_dir, "--port", port), f"cannot listen on 127.0.0.1:{port}"),
            (cli("serve", tmp_path / "nope", "--port", 0), "not a finished headstart run"),
        ):
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    finally:
        taken.close()


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver (make browser)",
)
def test_the_page_in_headless_chromium_shows_the_top_class(url, cells, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.get(f"{url}/")
        WebDriverWait(driver, 30).until(lambda d: "mobilenet_v2" in d.find_element(By.ID, "about").text)
        cell = cells[-1]
        driver.find_element(By.ID, "file").send_keys(str(cell))
        top = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#top-class .label"))
        status, answer = post_file(url, cell.name, cell.read_bytes(), top_k=5)
        assert status == 200 and top[0].text == answer["top"][0]["label"]
        rows = driver.find_elements(By.CSS_SELECTOR, "#result li")
        assert len(rows) == 2 and driver.find_element(By.ID, "status").text == cell.name
        shown = rows[0].find_element(By.CLASS_NAME, "p").text
        assert shown == f"{100 * answer['top'][0]['probability']:.1f}%"
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
