// The service's REST API as the page uses it: every call carries the API key (when one is set), errors
// become exceptions with the service's own message, and Server-Sent Events are read with fetch (EventSource
// cannot send an Authorization header).

const KEY_STORE = "imos-api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY_STORE, value); else sessionStorage.removeItem(KEY_STORE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

export async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      detail = body.detail || body.error || detail;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(detail);
  }
  return response;
}

export async function json(path, options = {}) {
  return (await call(path, options)).json();
}

export async function bitmap(path) {
  return createImageBitmap(await (await call(path)).blob());
}

// Read an SSE stream; onEvent({event, id, data}) for each message. Resolves when the server ends it.
export async function events(path, onEvent, signal) {
  const response = await call(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const message = { event: "message", id: null, data: "" };
      for (const line of block.split("\n")) {
        const at = line.indexOf(": ");
        if (at < 0) continue;
        const field = line.slice(0, at), text = line.slice(at + 2);
        if (field === "data") message.data += text; else message[field] = text;
      }
      if (message.data) onEvent({ ...message, data: JSON.parse(message.data) });
    }
  }
}

export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
