"use strict";
// rayalign annotation page. Every piece of data reaches the DOM through textContent:
// the pairs hold HTML-like and offensive text that must never be interpreted.
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  // Token: taken once from ?token=, kept in sessionStorage, removed from the address bar.
  if (params.get("token")) {
    sessionStorage.setItem("rayalign-annotate-token", params.get("token"));
    params.delete("token");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? "?" + q : "") + location.hash);
  }
  const TOKEN = sessionStorage.getItem("rayalign-annotate-token") || "";
  const BASE = location.pathname.replace(/\/review\/?$/, "").replace(/\/$/, "");
  const BATCH = params.get("batch") || "";

  // Who is answering. No default name: answers are recorded under it, and a shared
  // placeholder would mix people up (and strand claims under a name nobody uses).
  const annotatorBox = $("annotator");
  let annotator = (params.get("annotator") || localStorage.getItem("rayalign-annotator") || "").trim();
  annotatorBox.value = annotator;

  let current = null;   // the item on screen (claimed by `annotator`)
  let last = null;      // the last answered item, for Undo: {item, label}
  let shownAt = 0;      // when it was shown (for seconds taken)
  let busy = false;
  let pollTimer = null;
  let batchOnScreen = BATCH;  // the batch the progress counter follows

  function askForName() {
    $("card").hidden = true;
    annotatorBox.classList.add("needs-name");
    showMessage("Who is annotating? Type your name (or initials) in the Annotator box at the top and press Enter. "
      + "Your answers are recorded under it.");
    annotatorBox.focus();
  }

  // Give back the claim on the item on screen (tab closing, or a new name at this browser).
  function releaseClaim(who, item, viaBeacon) {
    if (!who || !item) return;
    const body = { annotator: who, batch_id: item.batch_id, item_id: item.id };
    if (viaBeacon && navigator.sendBeacon) {
      // A beacon cannot carry headers: the token rides in the body (text/plain, no preflight).
      body.token = TOKEN;
      navigator.sendBeacon(BASE + "/api/release", new Blob([JSON.stringify(body)], { type: "text/plain" }));
    } else {
      api("/api/release", { method: "POST", body: JSON.stringify(body), keepalive: true }).catch(() => {});
    }
  }

  annotatorBox.addEventListener("change", () => {
    const name = annotatorBox.value.trim();
    annotatorBox.value = name;
    if (name === annotator) return;
    if (current) releaseClaim(annotator, current, false);
    current = null;
    last = null;
    $("reveal").hidden = true;
    annotator = name;
    if (!name) { localStorage.removeItem("rayalign-annotator"); askForName(); return; }
    annotatorBox.classList.remove("needs-name");
    localStorage.setItem("rayalign-annotator", name);
    loadNext();
  });

  window.addEventListener("pagehide", () => { if (current) releaseClaim(annotator, current, true); });
  window.addEventListener("pageshow", (ev) => {
    // Back from the back/forward cache: the claim was given back on pagehide, take one again.
    if (ev.persisted && annotator && TOKEN) { current = null; loadNext(); }
  });

  async function api(path, opts) {
    const o = Object.assign({ headers: {} }, opts || {});
    o.headers["Authorization"] = "Bearer " + TOKEN;
    if (o.body) o.headers["Content-Type"] = "application/json";
    const r = await fetch(BASE + path, o);
    if (r.status === 401 || r.status === 403) {
      throw new Error("Not authorised: open the link printed by `rayalign annotate serve` (it carries ?token=...).");
    }
    if (!r.ok) throw new Error("Server error " + r.status + ": " + (await r.text()));
    return r.json();
  }

  function setText(id, text) { $(id).textContent = text == null ? "" : String(text); }

  function showMessage(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.className = "message" + (isError ? " error" : "");
    m.hidden = false;
  }

  function renderDialogue(container, text) {
    // HH-RLHF prompts are "\n\nHuman: ...\n\nAssistant: ..." transcripts: one block per turn.
    container.replaceChildren();
    const parts = String(text || "").split(/\n\n(?=(?:Human|Assistant|H|A):)/);
    for (const raw of parts) {
      const part = raw.replace(/^\s+/, "");
      if (!part) continue;
      const m = part.match(/^(Human|Assistant|H|A):[ ]?([\s\S]*)$/);
      const div = document.createElement("div");
      div.className = "turn";
      if (m) {
        const who = (m[1] === "H" || m[1] === "Human") ? "Human" : "Assistant";
        div.classList.add(who.toLowerCase());
        const sp = document.createElement("span");
        sp.className = "speaker";
        sp.textContent = who + ":";
        div.appendChild(sp);
        div.appendChild(document.createTextNode(m[2]));
      } else {
        div.textContent = part;
      }
      container.appendChild(div);
    }
  }

  function renderProgress(status) {
    // Progress of the batch on screen (the one being worked on), not of the whole queue.
    if (!status) return;
    const batches = status.batches || [];
    let b = batches.find((x) => x.batch_id === batchOnScreen);
    if (!b) b = batches.find((x) => !x.complete) || batches[batches.length - 1];
    const total = b ? b.total : 0, done = b ? b.answered : 0;
    setText("progress-batch", b ? "batch " + b.batch_id + ":" : "");
    setText("progress-text", done + " / " + total + " answered");
    $("progress-fill").style.width = (total ? (100 * done / total) : 0) + "%";
  }

  // Open a long transcript at its last Human turn: the question the two responses answer.
  function showLastHumanTurn() {
    const box = $("prompt");
    const turns = box.querySelectorAll(".turn.human");
    const lastHuman = turns.length ? turns[turns.length - 1] : null;
    box.scrollTop = 0;
    $("card").scrollIntoView({ block: "start" });
    $("prompt-note").hidden = box.scrollHeight <= box.clientHeight + 2;  // only when it scrolls
    if (!lastHuman) return;
    lastHuman.classList.add("last-human");
    box.scrollTop = Math.max(0, lastHuman.offsetTop - box.offsetTop - 8);
  }

  function showItem(item) {
    current = item;
    batchOnScreen = item.batch_id;
    $("message").hidden = true;
    $("card").hidden = false;
    setText("item-batch", item.batch_id);
    setText("item-id", item.id);
    renderDialogue($("prompt"), item.prompt);
    setText("response-a", item.response_a);
    setText("response-b", item.response_b);
    $("comment").value = "";
    $("col-a").classList.remove("picked");
    $("col-b").classList.remove("picked");
    $("card").dataset.itemId = item.id;
    showLastHumanTurn();
    shownAt = performance.now();
  }

  async function loadNext() {
    if (!annotator) { askForName(); return; }
    if (busy) return;
    busy = true;
    try {
      let q = "/api/next?annotator=" + encodeURIComponent(annotator);
      if (BATCH) q += "&batch=" + encodeURIComponent(BATCH);
      const res = await api(q);
      if (res.item) batchOnScreen = res.item.batch_id;
      renderProgress(res.status);
      current = res.item;
      if (!current) {
        $("card").hidden = true;
        const st = res.status || { total: 0, answered: 0 };
        if (!st.total) {
          showMessage("The queue is empty: no batch has been sent for annotation yet. This page checks again every few seconds.");
        } else if (st.answered < st.total) {
          showMessage("No free item right now: " + (st.total - st.answered)
            + " item(s) are being labelled by someone else. This page checks again every few seconds.");
        } else {
          showMessage("All done: every item in the queue has an answer. Thank you! The RLTHF loop picks the labels up on its own; a new batch will appear here when it is ready.");
        }
        // Keep polling: the loop enqueues the next batch while this page stays open.
        clearTimeout(pollTimer);
        pollTimer = setTimeout(() => { if (!$("view-annotate").hidden && !current) loadNext(); }, 10000);
        return;
      }
      showItem(current);
    } catch (e) {
      showMessage(e.message, true);
    } finally {
      busy = false;
    }
  }

  async function answer(label) {
    if (!current || busy || !annotator) return;
    busy = true;
    const item = current;
    if (label === "A") $("col-a").classList.add("picked");
    if (label === "B") $("col-b").classList.add("picked");
    try {
      const res = await api("/api/submit", {
        method: "POST",
        body: JSON.stringify({
          batch_id: item.batch_id, item_id: item.id, label: label,
          annotator: annotator, comment: $("comment").value || null,
          seconds: Math.round((performance.now() - shownAt) / 100) / 10,
        }),
      });
      renderProgress(res.status);
      setText("rv-human", label);
      setText("rv-ai", res.ai_label || "–");
      const badge = $("rv-agree");
      if (res.agree_with_ai === true) { badge.textContent = "agree"; badge.className = "badge yes"; }
      else if (res.agree_with_ai === false) { badge.textContent = "disagree"; badge.className = "badge no"; }
      else { badge.textContent = "n/a"; badge.className = "badge"; }
      setText("rv-rationale", res.rationale ? "AI rationale: " + res.rationale : "");
      $("reveal").hidden = false;
      last = { item: item, label: label };
    } catch (e) {
      showMessage(e.message, true);
      busy = false;
      return;
    }
    busy = false;
    await loadNext();
  }

  // Undo the last answer: it is withdrawn and its item comes back on screen (claimed again
  // for this annotator); the item that was showing stays claimed and comes next.
  async function undo() {
    if (!last || busy || !annotator) return;
    busy = true;
    const prev = last;
    try {
      const res = await api("/api/undo", {
        method: "POST",
        body: JSON.stringify({ batch_id: prev.item.batch_id, item_id: prev.item.id, annotator: annotator }),
      });
      last = null;
      $("reveal").hidden = true;
      batchOnScreen = res.item.batch_id;
      renderProgress(res.status);
      showItem(res.item);
    } catch (e) {
      showMessage(e.message, true);
    } finally {
      busy = false;
    }
  }

  $("btn-undo").addEventListener("click", () => undo());
  $("btn-a").addEventListener("click", () => answer("A"));
  $("btn-b").addEventListener("click", () => answer("B"));
  $("btn-tie").addEventListener("click", () => answer("tie"));
  $("btn-skip").addEventListener("click", () => answer("skip"));

  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || $("view-annotate").hidden) return;
    const k = ev.key.toLowerCase();
    const map = { a: "A", b: "B", t: "tie", s: "skip" };
    if (map[k]) { ev.preventDefault(); answer(map[k]); }
    else if (k === "u") { ev.preventDefault(); undo(); }
  });

  // -- reviewer view ------------------------------------------------------------------
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  const pct = (x) => (x == null ? "–" : (100 * x).toFixed(1) + " %");

  async function loadReview() {
    try {
      const q = BATCH ? "?batch=" + encodeURIComponent(BATCH) : "";
      const res = await api("/api/review" + q);
      renderProgress(res.status);
      setText("review-summary", "Human answers agree with the AI label on " + pct(res.agreement_with_ai)
        + " of " + res.compared + " A/B answers.");
      const bt = $("batch-rows");
      bt.replaceChildren();
      for (const b of res.status.batches) {
        const tr = document.createElement("tr");
        cell(tr, b.batch_id); cell(tr, b.answered + " / " + b.total);
        cell(tr, b.counts.A); cell(tr, b.counts.B); cell(tr, b.counts.tie); cell(tr, b.counts.skip);
        cell(tr, pct(b.agreement_with_ai)); cell(tr, b.complete ? "yes" : "no", b.complete ? "yes" : "");
        bt.appendChild(tr);
      }
      const at = $("answer-rows");
      at.replaceChildren();
      for (const r of res.rows) {
        const tr = document.createElement("tr");
        cell(tr, r.batch_id);
        cell(tr, r.prompt.replace(/\s+/g, " ").trim(), "clip").title = r.prompt;
        cell(tr, r.label); cell(tr, r.ai_label || "–");
        const agree = r.agree_with_ai;
        cell(tr, agree == null ? "–" : (agree ? "yes" : "no"), agree == null ? "" : (agree ? "yes" : "no"));
        cell(tr, r.annotator);
        cell(tr, r.seconds == null ? "–" : r.seconds);
        cell(tr, [r.comment, r.rationale ? "AI: " + r.rationale : ""].filter(Boolean).join("\n"), "wrap");
        at.appendChild(tr);
      }
    } catch (e) {
      setText("review-summary", e.message);
    }
  }

  async function loadApiDocs() {
    try {
      const r = await fetch(BASE + "/api-docs", { headers: { Authorization: "Bearer " + TOKEN } });
      setText("api-text", r.ok ? await r.text() : "Server error " + r.status);
    } catch (e) {
      setText("api-text", e.message);
    }
  }

  function show(view) {
    for (const v of ["annotate", "review", "api"]) {
      $("view-" + v).hidden = v !== view;
      $("tab-" + v).classList.toggle("active", v === view);
    }
    if (view === "review") loadReview();
    else if (view === "api") loadApiDocs();
    else if (!current) loadNext();
  }
  $("tab-annotate").addEventListener("click", () => show("annotate"));
  $("tab-review").addEventListener("click", () => show("review"));
  $("tab-api").addEventListener("click", () => show("api"));

  if (!TOKEN) {
    showMessage("No access token: open the link printed by `rayalign annotate serve` (it carries ?token=...).", true);
  } else {
    show(/\/review\/?$/.test(location.pathname) ? "review" : "annotate");
  }
})();
