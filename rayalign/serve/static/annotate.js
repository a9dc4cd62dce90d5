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

  const annotatorBox = $("annotator");
  annotatorBox.value = params.get("annotator") || localStorage.getItem("rayalign-annotator") || "annotator";
  annotatorBox.addEventListener("change", () => {
    annotatorBox.value = annotatorBox.value.trim() || "annotator";
    localStorage.setItem("rayalign-annotator", annotatorBox.value);
    loadNext();
  });

  let current = null;   // the item on screen
  let shownAt = 0;      // when it was shown (for seconds taken)
  let busy = false;
  let pollTimer = null;

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
    if (!status) return;
    const total = status.total || 0, done = status.answered || 0;
    setText("progress-text", done + " / " + total + " answered");
    $("progress-fill").style.width = (total ? (100 * done / total) : 0) + "%";
  }

  async function loadNext() {
    if (busy) return;
    busy = true;
    try {
      let q = "/api/next?annotator=" + encodeURIComponent(annotatorBox.value);
      if (BATCH) q += "&batch=" + encodeURIComponent(BATCH);
      const res = await api(q);
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
      $("message").hidden = true;
      $("card").hidden = false;
      setText("item-batch", current.batch_id);
      setText("item-id", current.id);
      renderDialogue($("prompt"), current.prompt);
      setText("response-a", current.response_a);
      setText("response-b", current.response_b);
      $("comment").value = "";
      $("col-a").classList.remove("picked");
      $("col-b").classList.remove("picked");
      $("card").dataset.itemId = current.id;
      shownAt = performance.now();
    } catch (e) {
      showMessage(e.message, true);
    } finally {
      busy = false;
    }
  }

  async function answer(label) {
    if (!current || busy) return;
    busy = true;
    const item = current;
    if (label === "A") $("col-a").classList.add("picked");
    if (label === "B") $("col-b").classList.add("picked");
    try {
      const res = await api("/api/submit", {
        method: "POST",
        body: JSON.stringify({
          batch_id: item.batch_id, item_id: item.id, label: label,
          annotator: annotatorBox.value, comment: $("comment").value || null,
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
    } catch (e) {
      showMessage(e.message, true);
      busy = false;
      return;
    }
    busy = false;
    await loadNext();
  }

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

  function show(view) {
    const review = view === "review";
    $("view-annotate").hidden = review;
    $("view-review").hidden = !review;
    $("tab-annotate").classList.toggle("active", !review);
    $("tab-review").classList.toggle("active", review);
    if (review) loadReview(); else if (!current) loadNext();
  }
  $("tab-annotate").addEventListener("click", () => show("annotate"));
  $("tab-review").addEventListener("click", () => show("review"));

  if (!TOKEN) {
    showMessage("No access token: open the link printed by `rayalign annotate serve` (it carries ?token=...).", true);
  } else {
    show(/\/review\/?$/.test(location.pathname) ? "review" : "annotate");
  }
})();
