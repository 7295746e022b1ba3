"""`headstart serve` of a text run over real HTTP on loopback (uvicorn in a thread, a tiny real
minilm-l6 run, real Rotten Tomatoes snippets): answers equal `headstart.predict` for every way a text
can come, concurrent texts batched by length, each bad input's status and reason, and the page's text
box in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import headstart
from headstart.data.rotten_tomatoes import load_reviews
from headstart.inference import load_run
from headstart.serve import create_app, running_server
from headstart.serve.batching import Batcher
from headstart.serve.inputs import MAX_PADDING, MAX_TEXT_CHARS, TextInputs, length_groups
from headstart.serve.requests import MAX_TEXTS, Input
from helpers import headless_chromium
from helpers import http_health as health
from helpers import http_send as send

LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def url(text_run_dir):
    with running_server(create_app(text_run_dir, max_batch=8, max_wait_ms=20, max_upload_mb=LIMIT_MB)) as base:
        yield base


@pytest.fixture(scope="module")
def snippets() -> list[str]:
    """Four short Rotten Tomatoes snippets and four longer than the run's 32 tokens (cut)."""
    reviews = sorted({text for text, _ in load_reviews()[:2000]}, key=len)
    return [t for t in reviews if len(t.split()) >= 3][:4] + reviews[-4:]


def post(url: str, body: bytes, content_type: str, top_k: int | None = None) -> tuple[int, dict]:
    query = f"?top_k={top_k}" if top_k else ""
    return send(urllib.request.Request(f"{url}/predict{query}", data=body, headers={"Content-Type": content_type}))


def post_json(url: str, value, top_k: int | None = None) -> tuple[int, dict]:
    return post(url, json.dumps(value).encode(), "application/json", top_k)


def post_form_text(url: str, data: bytes, top_k: int | None = None) -> tuple[int, dict]:
    """The form field `text`, as a browser form sends it (its bytes as given)."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return post(url, body, f"multipart/form-data; boundary={boundary}", top_k)


def assert_same(answer: dict, expected: dict) -> None:
    assert [t["label"] for t in answer["top"]] == [t["label"] for t in expected["top"]]
    assert [t["probability"] for t in answer["top"]] == pytest.approx(
        [t["probability"] for t in expected["top"]], abs=1e-4
    )


def test_health_describes_a_text_run(url, text_run_dir):
    h = health(url)
    assert h["inputs"] == ["text"] and h["backbone"] == "minilm-l6" and h["classes"] == ["fresh", "rotten"]
    assert h["max_length"] == 32 and h["max_text_chars"] == MAX_TEXT_CHARS and "input_size" not in h


def test_every_way_of_sending_a_text_answers_as_headstart_predict(url, text_run_dir, snippets):
    expected, skipped = headstart.predict(text_run_dir, snippets, top_k=2)
    assert not skipped and len(expected) == len(snippets)
    for text, row in zip(snippets, expected):
        for status, answer in (
            post_json(url, {"text": text}, top_k=2),
            post_form_text(url, text.encode(), top_k=2),
            post(url, text.encode(), "text/plain; charset=utf-8", top_k=2),
        ):
            assert status == 200, answer
            assert_same(answer, row)
    status, answer = post_json(url, {"texts": snippets}, top_k=2)
    assert status == 200 and len(answer["results"]) == len(snippets)
    for got, row in zip(answer["results"], expected):
        assert_same(got, row)


def test_bad_text_inputs_get_their_status_and_reason(url):
    utf8_error = "not UTF-8 text (byte 0xff at 5)"
    for (status, answer), code, fragment in (
        (post_json(url, {"text": "   "}), 400, "the text is empty"),
        (post_json(url, {"texts": ["fine", ""]}), 400, '"texts"[1] is empty'),
        (post_json(url, {"text": "word " * (MAX_TEXT_CHARS // 5 + 1)}), 400, "the limit is 100,000 characters"),
        (post_json(url, {"texts": ["a"] * (MAX_TEXTS + 1)}), 400, f"at most {MAX_TEXTS}"),
        (post(url, b'{"text": "\xff"}', "application/json"), 400, "the JSON body is not UTF-8 text (byte 0xff at 10)"),
        (post(url, b"great\xff film", "text/plain"), 400, f"the body is {utf8_error}"),
        (post_form_text(url, b"great\xff film"), 400, f"the field 'text' is {utf8_error}"),
        (post(url, b'{"text": "unfinished', "application/json"), 400, "not valid JSON"),
        (post_json(url, ["a list"]), 400, 'must be {"text": "..."} or {"texts"'),
        (post_json(url, {"txt": "typo"}), 400, 'must be {"text": "..."} or {"texts"'),
        (post_json(url, {"text": 3}), 400, '"text" must be a string, got a number'),
        (post_json(url, {"texts": "not a list"}), 400, '"texts" must be a non-empty list'),
        (post_json(url, {"texts": ["ok", None]}), 400, '"texts"[1] must be a string, got null'),
        (post(url, b"\x89PNG\r\n", "image/png"), 400, "image input is not supported: this server serves a text model"),
        (post(url, b"<text>hi</text>", "application/xml"), 415, "unsupported content type 'application/xml'"),
        (post_json(url, {"text": "long " * int(LIMIT_MB * 2**20 / 5 + 1)}), 413, "upload too large"),
    ):
        assert status == code and fragment in answer["error"], (code, fragment, answer)
    assert health(url)["status"] == "ok"


def test_concurrent_texts_are_answered_in_shared_batches(url, text_run_dir, snippets):
    """Half the snippets are cut at max_length: tokenized on several threads at once, each must still be cut."""
    expected = {r["path"]: r for r in headstart.predict(text_run_dir, snippets)[0]}
    before = health(url)["stats"]

    def one(i):
        return post_json(url, {"text": snippets[i % len(snippets)]}), i % len(snippets)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(96)))
    assert all(status == 200 for (status, _), _ in results), [a for (s, a), _ in results if s != 200][:3]
    for (_, answer), i in results:
        assert_same(answer, expected[f"text {i + 1}"])
    after = health(url)["stats"]
    assert after["requests"] - before["requests"] == 96
    assert after["requests_in_shared_batches"] > before["requests_in_shared_batches"]


def test_waiting_texts_run_in_passes_of_similar_length(text_run_dir, snippets):
    """Three short and three cut snippets waiting together: the cut ones share a pass, no pass mixes
    short and cut ones, each pass is padded to its own longest, and every text gets the probabilities
    a pass of its own gives."""
    run = load_run(text_run_dir)
    served = TextInputs()
    texts = [snippets[0], snippets[-1], snippets[1], snippets[-2], snippets[2], snippets[-3]]
    inputs = served.prepare(run, Input("text", texts, "texts", many=True))
    widths = []

    def forward(batch):
        widths.append(batch[0].ids.shape)
        return served.probabilities(run, batch, run.feed({}).prepare)

    async def scenario():
        batcher = Batcher(forward, 8, 0.5, collate=lambda xs: served.collate(run, xs), passes=served.passes)
        batcher.start()
        try:
            with batcher.announce():  # all six join one batch
                submitted = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
                await asyncio.sleep(0.05)
            return await asyncio.gather(*submitted), batcher.stats
        finally:
            await batcher.stop()

    rows, stats = asyncio.run(scenario())
    lengths = [len(x.ids) for x in inputs]
    groups = length_groups(lengths, MAX_PADDING)
    assert sorted(widths) == sorted((len(g), max(lengths[i] for i in g)) for g in groups)
    assert lengths[1::2] == [32, 32, 32] and max(lengths[0::2]) < 20
    assert [1, 3, 5] in [sorted(g) for g in groups] and stats["batches"] == len(groups) < len(texts)
    for x, row in zip(inputs, rows):
        alone = served.probabilities(run, served.collate(run, [x]), run.feed({}).prepare)[0]
        assert torch.allclose(row, alone, atol=1e-5)


def test_texts_prepared_on_many_threads_at_once_are_each_cut_at_max_length(text_run_dir, snippets):
    """The server prepares requests on a thread pool; the fast tokenizer keeps its truncation setting
    in itself, so without care another thread's call switches it off mid-call and a long text comes
    back uncut."""
    run = load_run(text_run_dir)
    served = TextInputs()
    short, long = snippets[0], snippets[-1]
    expected = {text: served.prepare(run, Input("text", [text], "text"))[0].ids.tolist() for text in (short, long)}
    assert len(expected[long]) == 32 and len(expected[short]) < 32

    def one(i: int) -> bool:
        text = long if i % 2 else short
        return served.prepare(run, Input("text", [text], "text"))[0].ids.tolist() == expected[text]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(2000)))


def test_length_groups_keep_padding_within_a_quarter_of_the_real_tokens():
    assert length_groups([5, 40, 6, 38, 7], MAX_PADDING) == [[0, 2, 4], [3, 1]]
    assert length_groups([10] * 5, MAX_PADDING) == [[0, 1, 2, 3, 4]]
    assert length_groups([4, 100], MAX_PADDING) == [[0], [1]]
    lengths = [3, 9, 27, 8, 30, 31, 12, 5, 32, 16]
    groups = length_groups(lengths, MAX_PADDING)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        real = sum(lengths[i] for i in group)
        assert len(group) * max(lengths[i] for i in group) <= (1 + MAX_PADDING) * real


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver (make browser)",
)
def test_the_page_offers_a_text_box_for_a_text_run_in_headless_chromium(url, snippets, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium(tempfile.mkdtemp(dir=tmp_path))
    try:
        driver.get(f"{url}/")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "text").is_displayed())
        assert not driver.find_element(By.ID, "drop").is_displayed()
        text = snippets[-1]
        driver.find_element(By.ID, "text").send_keys(text)
        driver.find_element(By.ID, "send").click()
        top = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#top-class .label"))
        status, answer = post_json(url, {"text": text}, top_k=5)
        assert status == 200 and top[0].text == answer["top"][0]["label"]
        shown = driver.find_elements(By.CSS_SELECTOR, "#result li")[0].find_element(By.CLASS_NAME, "p").text
        assert shown == f"{100 * answer['top'][0]['probability']:.1f}%"
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
