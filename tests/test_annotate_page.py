"""The annotation page end to end: Ray Serve app, real headless Chromium, the sqlite queue.

Needs Debian's chromium and chromium-driver (`apt-get install -y chromium chromium-driver`);
skips, saying so, only when they are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rayalign.data.schema import PairwiseItem
from rayalign.humans.queue import AnnotationQueue, default_queue_path
from rayalign.serve.annotate_app import build_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "test-token-0123456789abcdef"
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,1000"]

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium is not installed: apt-get install -y chromium chromium-driver")


def _items() -> list[PairwiseItem]:
    return [
        PairwiseItem(prompt="\n\nHuman: How do I boil an egg?\n\nAssistant:",
                     response_a="Put it in boiling water for 9 minutes, then cool it in cold water.",
                     response_b="Eggs are <b>overrated</b>. <img src=x onerror=\"document.title='pwned'\">"),
        PairwiseItem(prompt="\n\nHuman: Tell me something rude.\n\nAssistant: No.\n\nHuman: Please?\n\nAssistant:",
                     response_a="I'd rather keep things respectful.",
                     response_b="<script>alert(1)</script> fine, you asked for it"),
        PairwiseItem(prompt="\n\nHuman: What is 2+2?\n\nAssistant:",
                     response_a="4", response_b="22"),
    ]


def _queue(tmp_path: Path) -> tuple[AnnotationQueue, list[PairwiseItem]]:
    q = AnnotationQueue(default_queue_path(tmp_path))
    items = _items()
    q.enqueue("iter_00", items, {items[0].id: "A", items[1].id: "B", items[2].id: "A"},
              {it.id: f"rationale for {i}: the first is more direct" for i, it in enumerate(items)})
    return q, items


def test_api_requires_token_everywhere(tmp_path):
    q, items = _queue(tmp_path)
    c = TestClient(build_app(q.db_path, TOKEN))
    for path in ("/", "/review", "/api/status", "/api/next?annotator=x", "/api/review",
                 "/docs", "/openapi.json", "/no/such/route"):
        assert c.get(path).status_code == 401, path
        assert c.get(path, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code == 401
    assert c.post("/api/submit", json={"batch_id": "iter_00", "item_id": items[0].id,
                                       "label": "A", "annotator": "x"}).status_code == 401
    # the query-string token is accepted on the page only, never on the API
    assert c.get(f"/?token={TOKEN}").status_code == 200
    assert c.get(f"/api/status?token={TOKEN}").status_code == 401
    h = {"Authorization": f"Bearer {TOKEN}"}
    item = c.get("/api/next?annotator=x", headers=h).json()["item"]
    assert "ai_label" not in item and "rationale" not in item
    r = c.post("/api/submit", headers=h, json={"batch_id": "iter_00", "item_id": item["id"],
                                               "label": "maybe", "annotator": "x"})
    assert r.status_code == 422
    r = c.post("/api/submit", headers=h, json={"batch_id": "iter_00", "item_id": item["id"],
                                               "label": "B", "annotator": "x", "seconds": 2})
    assert r.status_code == 200 and r.json()["ai_label"] == "A" and r.json()["agree_with_ai"] is False
    assert q.answers("iter_00")[0]["label"] == "B"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture()
def browser(tmp_path):
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        opts.add_argument(f)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _wait(cond, timeout=20.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@needs_chromium
def test_page_in_chromium_labels_land_in_queue(ray_local, tmp_path, browser):
    from ray import serve
    from ray.serve.context import _get_global_client
    from selenium.webdriver.common.by import By

    from rayalign.serve.annotate_app import start_annotation_server

    q, items = _queue(tmp_path)
    try:
        _get_global_client()
        started_serve = False
    except Exception:
        started_serve = True
    base = start_annotation_server(q.db_path, TOKEN, port=_free_port())
    try:
        assert base.startswith("http://127.0.0.1:")
        # Refused without (or with a wrong) token, over real HTTP through the Serve proxy.
        assert _http_status(base + "/") == 401
        assert _http_status(base + "/api/status") == 401
        assert _http_status(base + "/api/status", {"Authorization": "Bearer nope-nope-nope"}) == 401
        assert _http_status(base + "/api/status", {"Authorization": f"Bearer {TOKEN}"}) == 200

        browser.get(f"{base}/?token={TOKEN}&annotator=tester")
        card = _wait(lambda: browser.find_element(By.ID, "card").is_displayed()
                     and browser.find_element(By.ID, "item-id").text, what="first item")
        assert "token=" not in browser.current_url  # stripped from the address bar
        first = card
        # 1) a click on "A is better"
        browser.find_element(By.ID, "btn-a").click()
        _wait(lambda: len(q.answers("iter_00")) == 1, what="clicked answer in the queue")
        ans = q.answers("iter_00")[0]
        assert (ans["item_id"], ans["label"], ans["annotator"]) == (first, "A", "tester")
        assert ans["seconds"] is not None and ans["seconds"] >= 0
        # the AI label is revealed only now
        _wait(lambda: browser.find_element(By.ID, "reveal").is_displayed(), what="reveal")
        assert browser.find_element(By.ID, "rv-ai").text in ("A", "B")
        # 2) the keyboard shortcut B on the next item
        second = _wait(lambda: (browser.find_element(By.ID, "item-id").text != first)
                       and browser.find_element(By.ID, "item-id").text, what="second item")
        shot_dir = Path(os.environ.get("RAYALIGN_SCREENSHOT_DIR", tmp_path))
        shot_dir.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shot_dir / "annotate_item.png"))
        browser.find_element(By.TAG_NAME, "body").send_keys("b")
        _wait(lambda: len(q.answers("iter_00")) == 2, what="keyboard answer in the queue")
        assert {a["item_id"]: a["label"] for a in q.answers("iter_00")}[second] == "B"
        # 3) T for tie on the last one
        third = _wait(lambda: (browser.find_element(By.ID, "item-id").text not in (first, second))
                      and browser.find_element(By.ID, "item-id").text, what="third item")
        browser.find_element(By.TAG_NAME, "body").send_keys("t")
        _wait(lambda: q.batch_status("iter_00")["complete"], what="batch complete")
        assert q.final_answers("iter_00")[third] == "tie"
        _wait(lambda: "All done" in browser.find_element(By.ID, "message").text, what="done message")
        assert browser.find_element(By.ID, "progress-text").text == "3 / 3 answered"

        # Hostile text stayed text: no element was created from the data, no script ran.
        assert browser.title != "pwned"
        assert browser.execute_script(
            "return document.querySelectorAll('#response-a img, #response-b img, "
            "#response-b script, #prompt b').length") == 0

        # Reviewer view: agreement with the AI over the A/B answers.
        browser.find_element(By.ID, "tab-review").click()
        summary = _wait(lambda: "%" in browser.find_element(By.ID, "review-summary").text
                        and browser.find_element(By.ID, "review-summary").text, what="review")
        expected = q.batch_status("iter_00")["agreement_with_ai"]
        assert f"{100 * expected:.1f} %" in summary
        rows = browser.find_elements(By.CSS_SELECTOR, "#answer-rows tr")
        assert len(rows) == 3
        browser.save_screenshot(str(shot_dir / "annotate_review.png"))
        assert json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/api/status", headers={"Authorization": f"Bearer {TOKEN}"}),
            timeout=10).read())["answered"] == 3
    finally:
        serve.delete("annotate")
        if started_serve:
            serve.shutdown()  # leave no proxy on our port for later tests


def test_driver_waits_for_people_answering_through_the_api(tmp_path):
    """The RLTHF driver's polling loop, with a person answering through the JSON API."""
    import threading

    from rayalign.humans.queue import QueueAnnotator

    items = _items()
    ai = {it.id: "A" for it in items}
    result: dict = {}

    def driver():  # what rlthf/driver.py does: ask, sleep, ask again (fresh objects each time)
        while True:
            ann = QueueAnnotator(AnnotationQueue(default_queue_path(tmp_path)), "people")
            got = ann.request_labels("iter_03", items, ai)
            if got is not None:
                result["labels"] = got
                return
            time.sleep(0.05)

    t = threading.Thread(target=driver, daemon=True)
    t.start()
    db = default_queue_path(tmp_path)
    _wait(lambda: db.exists() and AnnotationQueue(db).batches() == ["iter_03"], what="enqueue")
    c = TestClient(build_app(db, TOKEN))
    h = {"Authorization": f"Bearer {TOKEN}"}
    answers = iter(["B", "skip", "A"])
    while (item := c.get("/api/next?annotator=ann", headers=h).json()["item"]) is not None:
        assert "labels" not in result  # still waiting while items are open
        lab = next(answers)
        c.post("/api/submit", headers=h, json={"batch_id": item["batch_id"], "item_id": item["id"],
                                               "label": lab, "annotator": "ann"})
    t.join(timeout=10)
    assert result["labels"] == {items[0].id: "B", items[2].id: "A"}
    assert AnnotationQueue(db).batch_status("iter_03")["total"] == 3  # enqueued once
