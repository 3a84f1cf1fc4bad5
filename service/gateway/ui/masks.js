// Index masks in the page: the DAVIS palette the service writes its PNGs with, PNG -> labels, labels -> .npy
// (what the annotation route takes), the overlay's pixels, and brush strokes.

export const PALETTE = davisPalette();
const BY_COLOUR = new Map(PALETTE.map((rgb, i) => [(rgb[0] << 16) | (rgb[1] << 8) | rgb[2], i]));

function davisPalette() {
  const out = [];
  for (let i = 0; i < 256; i++) {
    let c = i, r = 0, g = 0, b = 0;
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    out.push([r, g, b]);
  }
  return out;
}

export function colour(id) {
  const [r, g, b] = PALETTE[id % 256];
  return `rgb(${r}, ${g}, ${b})`;
}

// A decoded palette PNG (ImageBitmap) -> labels (Uint8Array, row-major H x W).
export function labelsOf(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const px = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const out = new Uint8Array(bitmap.width * bitmap.height);
  for (let i = 0, p = 0; i < out.length; i++, p += 4) {
    out[i] = BY_COLOUR.get((px[p] << 16) | (px[p + 1] << 8) | px[p + 2]) ?? 0;
  }
  return out;
}

// labels [H, W] uint8 -> .npy bytes (format 1.0, C order).
export function npy(labels, height, width) {
  let header = `{'descr': '|u1', 'fortran_order': False, 'shape': (${height}, ${width}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += " ".repeat(pad % 64) + "\n";
  const out = new Uint8Array(10 + header.length + labels.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(labels, 10 + header.length);
  return out;
}

// Overlay pixels: each visible object's colour at the given opacity, transparent elsewhere.
export function paint(imageData, labels, visible, opacity) {
  const px = imageData.data, alpha = Math.round(255 * opacity);
  for (let i = 0, p = 0; i < labels.length; i++, p += 4) {
    const id = labels[i];
    if (id && visible(id)) {
      const rgb = PALETTE[id];
      px[p] = rgb[0]; px[p + 1] = rgb[1]; px[p + 2] = rgb[2]; px[p + 3] = alpha;
    } else {
      px[p + 3] = 0;
    }
  }
  return imageData;
}

// A round brush stroke from (x0, y0) to (x1, y1) in pixels: sets `value`, or with an eraser clears `value`.
export function stroke(labels, width, height, x0, y0, x1, y1, radius, value, erase) {
  const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(1, radius / 2)));
  const r2 = radius * radius;
  for (let s = 0; s <= steps; s++) {
    const cx = x0 + ((x1 - x0) * s) / steps, cy = y0 + ((y1 - y0) * s) / steps;
    const xa = Math.max(0, Math.floor(cx - radius)), xb = Math.min(width - 1, Math.ceil(cx + radius));
    const ya = Math.max(0, Math.floor(cy - radius)), yb = Math.min(height - 1, Math.ceil(cy + radius));
    for (let y = ya; y <= yb; y++) {
      for (let x = xa; x <= xb; x++) {
        if ((x - cx) ** 2 + (y - cy) ** 2 > r2) continue;
        const i = y * width + x;
        if (!erase) labels[i] = value; else if (labels[i] === value) labels[i] = 0;
      }
    }
  }
}
