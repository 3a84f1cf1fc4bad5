// The review page: open a sequence, draw, propagate with live progress, scroll, correct, download.

import { apiKey, call, download, events, json, setApiKey } from "./api.js";
import { colour, npy } from "./masks.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };
const viewer = new Viewer($("image"), $("overlay"), () => status(`Frame ${viewer.t + 1} edited: Propagate to apply`));
let objects = [{ id: 1, name: "object 1" }];
let running = null;

function renderObjects() {
  const list = $("objects");
  list.replaceChildren();
  for (const obj of objects) {
    const li = document.createElement("li");
    const pick = Object.assign(document.createElement("input"), { type: "radio", name: "active", value: obj.id,
      checked: obj.id === viewer.active });
    pick.setAttribute("aria-label", `Draw ${obj.name}`);
    pick.onchange = () => { viewer.active = obj.id; };
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = colour(obj.id);
    const name = Object.assign(document.createElement("input"), { type: "text", value: obj.name });
    name.setAttribute("aria-label", `Name of object ${obj.id}`);
    name.onchange = () => { obj.name = name.value.trim() || `object ${obj.id}`; };
    const shown = Object.assign(document.createElement("input"), { type: "checkbox",
      checked: !viewer.hidden.has(obj.id) });
    shown.setAttribute("aria-label", `Show object ${obj.id}`);
    shown.onchange = () => { if (shown.checked) viewer.hidden.delete(obj.id); else viewer.hidden.add(obj.id);
      viewer.redraw(); };
    li.append(pick, swatch, name, shown);
    list.append(li);
  }
}

function addObject() {
  const id = Math.max(0, ...objects.map((o) => o.id)) + 1;
  objects.push({ id, name: `object ${id}` });
  viewer.active = id;
  renderObjects();
}

function knowObjects(labels) {
  const ids = new Set(labels);
  for (const id of ids) if (id && !objects.some((o) => o.id === id)) objects.push({ id, name: `object ${id}` });
  objects.sort((a, b) => a.id - b.id);
}

async function goTo(t) {
  await viewer.show(t);
  $("frame").value = viewer.t;
  $("frame-label").textContent = `${viewer.t + 1} / ${viewer.n}`;
}

async function openSession(sid) {
  const s = await json(`/v1/sessions/${sid}`);
  viewer.open(sid, s.frames, s.height, s.width);
  $("sid").textContent = sid;
  $("frame").max = s.frames - 1;
  $("viewer").hidden = false;
  viewer.fit();
  const named = Object.entries(s.labels || {}).map(([id, name]) => ({ id: Number(id), name }));
  objects = named.length ? named.sort((a, b) => a.id - b.id) : [{ id: 1, name: "object 1" }];
  viewer.active = objects[0].id;
  await goTo(Math.floor(s.frames / 2));
  if (s.run) await loadAllResults(s.frames);
  renderObjects();
  status(`Opened ${s.frames} frames (${s.width} × ${s.height}). Draw on a frame, then Propagate.`);
  history.replaceState(null, "", `#session=${sid}`);
}

async function loadAllResults(n) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const t = next++;
      try { knowObjects(await viewer.loadResult(t)); } catch (_) { /* frame not computed */ }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

// scope "affected": after a finished run, a single correction recomputes only the frames it owns.
async function propagate(scope = "affected") {
  if (!viewer.sid || running) return;
  const edited = [...viewer.edits.keys()].sort((a, b) => a - b);
  const named = Object.fromEntries(objects.map((o) => [String(o.id), o.name]));
  try {
    $("propagate").disabled = $("propagate-all").disabled = true;
    await call(`/v1/sessions/${viewer.sid}/labels`, { method: "PUT", body: JSON.stringify(named),
      headers: { "Content-Type": "application/json" } });
    for (const t of edited) {
      const body = new FormData();
      body.append("mask", new Blob([npy(viewer.edits.get(t), viewer.height, viewer.width)]), `frame${t}.npy`);
      await call(`/v1/sessions/${viewer.sid}/masks/${t}`, { method: "PUT", body });
    }
    const run = await json(`/v1/sessions/${viewer.sid}/propagate`, { method: "POST",
      body: JSON.stringify({ direction: "both", scope }), headers: { "Content-Type": "application/json" } });
    edited.forEach((t) => viewer.edits.delete(t));
    await follow(run);
  } catch (err) {
    status(`Propagation failed: ${err.message}`);
  } finally {
    $("propagate").disabled = $("propagate-all").disabled = false;
    running = null;
  }
}

async function follow(run) {
  running = new AbortController();
  const progress = $("progress");
  progress.value = 0;
  progress.max = run.span ? run.span[1] - run.span[0] + 1 : run.num_frames || viewer.n;
  const from = run.anchors.map((a) => a + 1).join(", ");
  status(run.span ? `Run ${run.id}: recomputing frames ${run.span[0] + 1}–${run.span[1] + 1} from the correction on `
    + `frame ${from}…` : `Run ${run.id}: propagating from frame(s) ${from}…`);
  const pending = [];
  await events(`/v1/sessions/${viewer.sid}/events`, ({ event, data }) => {
    if (data.run !== run.id) return;
    if (event === "frame") {
      progress.value = data.published;
      pending.push(viewer.loadResult(data.frame).then(knowObjects));
    } else if (event === "error") {
      throw new Error(data.message || "the run failed");
    }
  }, running.signal);
  await Promise.all(pending);
  renderObjects();
  progress.value = progress.max;
  document.body.dataset.run = String(run.id);
  status(`Run ${run.id} done: ${progress.max} frames. Scroll to review; fix any frame and propagate again.`);
  if (run.span) document.body.dataset.span = run.span.join("-"); else delete document.body.dataset.span;
}

async function fetchMasks(format) {
  try {
    const response = await call(`/v1/sessions/${viewer.sid}/masks?format=${format}`);
    const cd = response.headers.get("Content-Disposition") || "";
    const name = (cd.match(/filename="([^"]+)"/) || [])[1] || `masks-${format}`;
    download(await response.blob(), name);
    status(`Downloaded ${name}`);
  } catch (err) {
    status(`Download failed: ${err.message}`);
  }
}

function keys(event) {
  if (!viewer.sid || event.target.matches("input[type=text], input[type=password], select")) return;
  const steps = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, PageDown: 10, PageUp: -10 };
  if (event.key in steps) { goTo(viewer.t + steps[event.key]); event.preventDefault(); return; }
  if (event.key === "Home" || event.key === "End") { goTo(event.key === "Home" ? 0 : viewer.n - 1); return; }
  const key = event.key.toLowerCase();
  if (key === "b" || key === "e") setTool(key === "b" ? "brush" : "eraser");
  else if (key === "[" || key === "]") { $("size").value = viewer.radius = Math.max(1, viewer.radius +
    (key === "]" ? 2 : -2)); }
  else if (key === "p") propagate("affected");
  else if (/^[1-9]$/.test(key) && objects.some((o) => o.id === Number(key))) {
    viewer.active = Number(key); renderObjects();
  }
}

function setTool(tool) {
  viewer.tool = tool;
  document.querySelector(`input[name=tool][value=${tool}]`).checked = true;
}

const CT_PRESETS = ["abdomen", "liver", "lung", "bone", "brain", "mediastinum"];  // service.io.medical.intensity

function wire() {
  for (const select of document.querySelectorAll("select.ct-window")) {
    select.append(...CT_PRESETS.map((name) => Object.assign(document.createElement("option"), { textContent: name })));
  }
  $("apikey").value = apiKey();
  $("apikey").onchange = (e) => { setApiKey(e.target.value.trim()); loadPacs(); };
  $("open-file").onsubmit = async (e) => {
    e.preventDefault();
    const body = new FormData();
    body.append("sequence", $("file").files[0]);
    if ($("window").value) body.append("window", $("window").value);
    status("Uploading and reading the sequence…");
    try { await openSession((await json("/v1/sessions", { method: "POST", body })).id); }
    catch (err) { status(`Could not open the file: ${err.message}`); }
  };
  $("open-session").onsubmit = async (e) => {
    e.preventDefault();
    try { await openSession($("session-id").value.trim()); }
    catch (err) { status(`Could not open the session: ${err.message}`); }
  };
  $("open-pacs").onsubmit = async (e) => {
    e.preventDefault();
    const body = new FormData();
    for (const [k, id] of [["pacs", "pacs"], ["study", "study"], ["series", "series"], ["window", "pacs-window"]]) {
      if ($(id).value) body.append(k, $(id).value.trim());
    }
    status("Pulling the series from the PACS…");
    try { await openSession((await json("/v1/dicomweb/sessions", { method: "POST", body })).id); }
    catch (err) { status(`Could not open the series: ${err.message}`); }
  };
  $("frame").oninput = (e) => goTo(Number(e.target.value));
  $("overlay").addEventListener("wheel", (e) => { e.preventDefault(); goTo(viewer.t + Math.sign(e.deltaY)); },
    { passive: false });
  $("size").oninput = (e) => { viewer.radius = Number(e.target.value); };
  $("opacity").oninput = (e) => { viewer.opacity = Number(e.target.value) / 100; viewer.redraw(); };
  for (const r of document.querySelectorAll("input[name=tool]")) r.onchange = () => setTool(r.value);
  $("add-object").onclick = addObject;
  $("propagate").onclick = () => propagate("affected");
  $("propagate-all").onclick = () => propagate("all");
  for (const b of document.querySelectorAll("button[data-format]")) b.onclick = () => fetchMasks(b.dataset.format);
  document.addEventListener("keydown", keys);
  window.addEventListener("resize", () => viewer.sid && viewer.fit());
}

async function loadPacs() {
  const select = $("pacs");
  try {
    const { pacs } = await json("/v1/dicomweb/pacs");
    select.replaceChildren(...pacs.map((name) => Object.assign(document.createElement("option"), { textContent: name })));
    $("open-pacs").hidden = pacs.length === 0;
  } catch (_) {
    $("open-pacs").hidden = true;
  }
}

wire();
renderObjects();
loadPacs();
const fromHash = location.hash.match(/session=([0-9a-f]{32})/);
if (fromHash) openSession(fromHash[1]).catch((err) => status(`Could not open the session: ${err.message}`));
