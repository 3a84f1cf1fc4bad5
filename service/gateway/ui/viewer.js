// One open session in the page: its frames (fetched as needed, a few ahead), the masks of the current run,
// the user's edits, and drawing on the two stacked canvases (image below, overlay above).

import { bitmap } from "./api.js";
import { labelsOf, paint, stroke } from "./masks.js";

const AHEAD = 8;

export class Viewer {
  constructor(image, overlay, onChange) {
    this.image = image;
    this.overlay = overlay;
    this.onChange = onChange;
    this.frameCache = new Map();   // t -> Promise<ImageBitmap>
    this.results = new Map();      // t -> Uint8Array labels of the current run
    this.edits = new Map();        // t -> Uint8Array labels the user drew (not yet sent)
    this.hidden = new Set();
    this.opacity = 0.5;
    this.tool = "brush";
    this.radius = 10;
    this.active = 1;
    this.t = 0;
  }

  open(sid, n, height, width) {
    Object.assign(this, { sid, n, height, width, t: 0 });
    this.frameCache.clear(); this.results.clear(); this.edits.clear();
    for (const c of [this.image, this.overlay]) { c.width = width; c.height = height; }
    this.fit();
    this._pointer();
  }

  // Native size when it fits beside the panel, else scaled down (same aspect).
  fit() {
    const room = Math.max(256, window.innerWidth - 420), scale = Math.min(1, room / this.width);
    for (const c of [this.image, this.overlay]) {
      c.style.width = `${Math.round(this.width * scale)}px`;
      c.style.height = `${Math.round(this.height * scale)}px`;
    }
    // Whole-pixel position: text above can leave the stage at a fractional offset, which would resample
    // every frame pixel (blur) even at native size.
    const stage = this.image.parentElement;
    stage.style.marginTop = "0px";
    stage.style.marginLeft = "0px";
    const box = stage.getBoundingClientRect();
    const top = box.top + window.scrollY, left = box.left + window.scrollX;
    stage.style.marginTop = `${Math.ceil(top) - top}px`;
    stage.style.marginLeft = `${Math.ceil(left) - left}px`;
  }

  frame(t) {
    if (!this.frameCache.has(t)) {
      const p = bitmap(`/v1/sessions/${this.sid}/frames/${t}`);
      p.catch(() => this.frameCache.delete(t));
      this.frameCache.set(t, p);
    }
    return this.frameCache.get(t);
  }

  async show(t) {
    this.t = Math.max(0, Math.min(this.n - 1, t));
    const shown = this.t;
    const bmp = await this.frame(shown);
    for (let k = 1; k <= AHEAD; k++) {
      if (shown + k < this.n) this.frame(shown + k);
      if (shown - k >= 0) this.frame(shown - k);
    }
    if (shown !== this.t) return;  // the user scrolled on while it loaded
    this.image.getContext("2d").drawImage(bmp, 0, 0);
    this.redraw();
  }

  labels(t) {
    return this.edits.get(t) || this.results.get(t) || null;
  }

  redraw() {
    const ctx = this.overlay.getContext("2d");
    const labels = this.labels(this.t);
    if (!labels) { ctx.clearRect(0, 0, this.width, this.height); return; }
    const data = ctx.createImageData(this.width, this.height);
    ctx.putImageData(paint(data, labels, (id) => !this.hidden.has(id), this.opacity), 0, 0);
  }

  async loadResult(t) {
    const labels = labelsOf(await bitmap(`/v1/sessions/${this.sid}/masks/${t}`));
    this.results.set(t, labels);
    if (t === this.t && !this.edits.has(t)) this.redraw();
    return labels;
  }

  _editable() {
    if (!this.edits.has(this.t)) {
      const base = this.results.get(this.t);
      this.edits.set(this.t, base ? base.slice() : new Uint8Array(this.width * this.height));
    }
    return this.edits.get(this.t);
  }

  _pixel(event) {
    const box = this.overlay.getBoundingClientRect();
    return [((event.clientX - box.left) * this.width) / box.width - 0.5,
            ((event.clientY - box.top) * this.height) / box.height - 0.5];
  }

  _pointer() {
    if (this._wired) return;
    this._wired = true;
    let last = null;
    const draw = (event) => {
      const [x, y] = this._pixel(event);
      const [x0, y0] = last || [x, y];
      stroke(this._editable(), this.width, this.height, x0, y0, x, y, this.radius, this.active,
             this.tool === "eraser");
      last = [x, y];
      this.redraw();
    };
    this.overlay.addEventListener("pointerdown", (event) => {
      if (!this.sid || event.button !== 0) return;
      this.overlay.setPointerCapture(event.pointerId);
      last = null;
      draw(event);
    });
    this.overlay.addEventListener("pointermove", (event) => { if (last) draw(event); });
    const end = () => { if (last) { last = null; this.onChange(); } };
    this.overlay.addEventListener("pointerup", end);
    this.overlay.addEventListener("pointercancel", end);
  }
}

export { stroke };
