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


# -- the human loop's rough edges (issue 14, items 16 and 17) --------------------------------
def _long_prompt(turns: int = 14) -> str:
    """A long HH transcript whose last Human turn is the one that matters."""
    parts = []
    for i in range(turns):
        parts.append(f"\n\nHuman: question {i}: " + "tell me more about the history of bread. " * 6)
        parts.append(f"\n\nAssistant: answer {i}: " + "Bread has been baked for thousands of years. " * 6)
    parts.append("\n\nHuman: LAST-TURN so which bread should I bake tonight?\n\nAssistant:")
    return "".join(parts)


@pytest.fixture()
def page_server(tmp_path):
    """The app under uvicorn on loopback (the Serve path is covered above; this is faster)."""
    import threading

    import uvicorn

    q = AnnotationQueue(default_queue_path(tmp_path))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(q.db_path, TOKEN), host="127.0.0.1",
                                           port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    _wait(lambda: server.started, what="uvicorn start")
    yield q, f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(timeout=10)


def _claims(q: AnnotationQueue) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(q.db_path) as con:
        return sorted(con.execute("SELECT annotator, item_id FROM claims").fetchall())


def _item_id(browser) -> str:
    from selenium.webdriver.common.by import By

    el = browser.find_element(By.ID, "item-id")
    return el.text if browser.find_element(By.ID, "card").is_displayed() else ""


def test_api_docs_cover_every_route_behind_the_token(tmp_path):
    q, _ = _queue(tmp_path)
    app = build_app(q.db_path, TOKEN)
    c = TestClient(app)
    h = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get("/api-docs").status_code == 401 and c.get("/openapi.json").status_code == 401
    doc = c.get("/api-docs", headers=h)
    assert doc.status_code == 200 and doc.headers["content-type"].startswith("text/markdown")
    assert c.get(f"/api-docs?token={TOKEN}").status_code == 200  # a page: ?token= works
    spec = c.get("/openapi.json", headers=h).json()
    routes = {r.path for r in app.routes if r.path not in ("/openapi.json", "/", "/review")}
    assert {"/api/next", "/api/submit", "/api/undo", "/api/release", "/api/status",
            "/api/review"} <= routes
    for path in routes:
        assert f"`{path}" in doc.text or f" {path}`" in doc.text or f"`GET {path}" in doc.text \
            or f"{path}`" in doc.text, f"{path} is not documented in annotate_api.md"
        assert path in spec["paths"] or path == "/api-docs", path


def test_release_beacon_and_undo_over_the_api(tmp_path):
    q, items = _queue(tmp_path)
    c = TestClient(build_app(q.db_path, TOKEN))
    h = {"Authorization": f"Bearer {TOKEN}"}
    item = c.get("/api/next?annotator=ana&batch=iter00", headers=h).json()["item"]  # either spelling
    assert item["batch_id"] == "iter_00" and _claims(q) == [("ana", item["id"])]
    assert c.get("/api/next?annotator=ana&batch=iter_9", headers=h).status_code == 404
    # A beacon carries no headers: the token is in its text/plain body, and it is checked.
    beacon = {"annotator": "ana", "batch_id": "iter_00", "item_id": item["id"]}
    r = c.post("/api/release", content=json.dumps({**beacon, "token": "wrong-token-123456"}),
               headers={"Content-Type": "text/plain"})
    assert r.status_code == 401 and _claims(q) == [("ana", item["id"])]
    assert c.post("/api/release", content=json.dumps(beacon)).status_code == 401
    r = c.post("/api/release", content=json.dumps({**beacon, "annotator": "bob", "token": TOKEN}))
    assert r.json() == {"released": 0}  # nobody frees someone else's claim
    r = c.post("/api/release", content=json.dumps({**beacon, "token": TOKEN}),
               headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json() == {"released": 1} and _claims(q) == []
    # Undo: the answer is withdrawn and the item comes back claimed for the same person.
    item = c.get("/api/next?annotator=ana", headers=h).json()["item"]
    c.post("/api/submit", headers=h, json={"batch_id": item["batch_id"], "item_id": item["id"],
                                           "label": "A", "annotator": "ana"})
    assert q.batch_status("iter_00")["answered"] == 1
    assert c.post("/api/undo", headers=h, json={"batch_id": item["batch_id"], "item_id": item["id"],
                                                "annotator": "bob"}).status_code == 404
    r = c.post("/api/undo", headers=h, json={"batch_id": item["batch_id"], "item_id": item["id"],
                                             "annotator": "ana"})
    assert r.status_code == 200 and r.json()["item"]["id"] == item["id"]
    assert "ai_label" not in r.json()["item"]
    assert q.batch_status("iter_00")["answered"] == 0 and _claims(q) == [("ana", item["id"])]


@needs_chromium
def test_page_asks_for_a_name_releases_claims_and_undoes(page_server, browser):
    """No literal default name; a new name or a closed tab gives the claim back; Undo."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    q, base = page_server
    items = _items()
    q.enqueue("iter_00", items, {it.id: "A" for it in items})
    browser.get(f"{base}/?token={TOKEN}")
    msg = _wait(lambda: browser.find_element(By.ID, "message").text, what="name prompt")
    assert "Who is annotating?" in msg and not browser.find_element(By.ID, "card").is_displayed()
    time.sleep(0.5)
    assert _claims(q) == []  # nothing claimed under a made-up name
    box = browser.find_element(By.ID, "annotator")
    assert box.get_attribute("value") == ""
    box.send_keys("ana", Keys.ENTER)
    first = _wait(lambda: _item_id(browser), what="first item")
    assert _claims(q) == [("ana", first)]
    # The same browser changes annotator: ana's claim goes back, bob claims.
    box.clear()
    box.send_keys("bob", Keys.ENTER)
    _wait(lambda: [a for a, _ in _claims(q)] == ["bob"], what="claim moved to bob")
    assert browser.execute_script("return localStorage.getItem('rayalign-annotator')") == "bob"
    # Progress counts the batch on screen; answer, then undo the answer.
    shown = _wait(lambda: _item_id(browser), what="bob's item")
    browser.find_element(By.TAG_NAME, "body").send_keys("a")
    _wait(lambda: len(q.answers("iter_00")) == 1, what="answer")
    _wait(lambda: browser.find_element(By.ID, "reveal").is_displayed(), what="reveal")
    _wait(lambda: _item_id(browser) not in ("", shown), what="next item")
    assert browser.find_element(By.ID, "progress-text").text == "1 / 3 answered"
    browser.find_element(By.ID, "btn-undo").click()
    _wait(lambda: _item_id(browser) == shown, what="undone item back on screen")
    assert q.answers("iter_00") == []
    assert browser.find_element(By.ID, "progress-text").text == "0 / 3 answered"
    assert not browser.find_element(By.ID, "reveal").is_displayed()
    browser.find_element(By.ID, "btn-b").click()
    _wait(lambda: len(q.answers("iter_00")) == 1, what="answer after undo")
    assert q.answers("iter_00")[0]["label"] == "B" and q.answers("iter_00")[0]["item_id"] == shown
    on_screen = _wait(lambda: _item_id(browser) not in ("", shown) and _item_id(browser),
                      what="next item after undo")
    assert ("bob", on_screen) in _claims(q)
    # Closing the tab (navigating away) sends the release beacon.
    browser.get("about:blank")
    _wait(lambda: _claims(q) == [], timeout=10, what="claim released on unload")


@pytest.fixture()
def phone(tmp_path):
    """Chromium emulating a phone (390 x 844 CSS px, touch), as a person on the move sees it."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'phone-profile'}"]:
        opts.add_argument(f)
    opts.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2, "touch": True}})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


LAST_HUMAN_VISIBLE_JS = """
const turns = document.querySelectorAll('#prompt .turn.human');
const el = turns[turns.length - 1];
const r = el.getBoundingClientRect(), box = document.getElementById('prompt').getBoundingClientRect();
const x = r.left + 8, y = r.top + 8;
const hit = document.elementFromPoint(x, y);
return {text: el.textContent, top: r.top, boxTop: box.top, boxBottom: box.bottom,
        vh: window.innerHeight, vw: window.innerWidth, docW: document.documentElement.scrollWidth,
        onTop: !!hit && el.contains(hit),
        inBox: r.top >= box.top - 1 && r.top + 24 <= box.bottom,
        inView: r.top >= 0 && r.top + 24 <= window.innerHeight,
        boxHeight: box.height};
"""


@needs_chromium
@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_long_prompt_opens_at_the_last_human_turn(page_server, request, device, tmp_path):
    """Issue 14.17: not clipped at 22rem, scrolled to the last Human turn, batch progress."""
    from selenium.webdriver.common.by import By

    drv = request.getfixturevalue("phone" if device == "phone" else "browser")
    q, base = page_server
    long_item = PairwiseItem(prompt=_long_prompt(), response_a="A sourdough loaf, if you have a starter.",
                             response_b="Whatever.")
    q.enqueue("iter00", [long_item] + _items()[:1], {long_item.id: "A"})
    q.enqueue("iter01", _items()[1:], {})
    drv.get(f"{base}/?token={TOKEN}&annotator=phone-{device}")
    _wait(lambda: _item_id(drv) == long_item.id, what="long item")
    time.sleep(0.3)
    got = drv.execute_script(LAST_HUMAN_VISIBLE_JS)
    assert got["text"].startswith("Human:LAST-TURN") or "LAST-TURN" in got["text"], got
    assert got["inBox"] and got["inView"] and got["onTop"], got
    assert got["docW"] <= got["vw"] + 1, got  # no sideways scrolling
    # The box is taller than the old 22rem cap on a tall screen (it follows the viewport).
    assert got["boxHeight"] > 0.5 * got["vh"], got
    # What "better" means is on the page; progress counts this batch (2), not the queue (4).
    assert drv.find_element(By.ID, "prompt-note").is_displayed()  # "earlier turns above"
    assert "more helpful and harmless" in drv.find_element(By.ID, "guidelines").text
    assert drv.find_element(By.ID, "progress-text").text == "0 / 2 answered"
    assert "iter00" in drv.find_element(By.ID, "progress-batch").text
    shot_dir = Path(os.environ.get("RAYALIGN_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(shot_dir / f"annotate_long_prompt_{device}.png"))
