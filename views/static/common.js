// Shared by the trader and admin pages: the token, API calls, and Server-Sent Events read
// through fetch (so the token travels in the Authorization header, never in a URL).
"use strict";

const FF = (() => {
  const KEY = "fundedflow.token";

  function token() { return sessionStorage.getItem(KEY); }

  function claims() {
    const t = token();
    if (!t) return null;
    try {
      const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part));  // shown only; the server checks the token
    } catch (e) { return null; }
  }

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({ Authorization: "Bearer " + token() }, extraHeaders || {});
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (resp.status === 401) signOut("Your session has expired: sign in again.");
    return { status: resp.status, data };
  }

  // Reads `path` as an event stream; calls onEvent(type, data, id) per event and onState(text)
  // when the connection changes. Reconnects by itself with Last-Event-ID.
  function stream(path, onEvent, onState) {
    let lastId = null;
    let stopped = false;
    const controller = new AbortController();
    async function once() {
      const headers = { Authorization: "Bearer " + token(), Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const resp = await fetch(path, { headers, signal: controller.signal });
      if (resp.status === 401) { signOut("Your session has expired: sign in again."); return false; }
      if (resp.status === 404) { onState("not found"); return false; }
      if (!resp.ok || !resp.body) throw new Error("stream answered " + resp.status);
      onState("live");
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;  // heartbeat
            const at = line.indexOf(":");
            const field = at < 0 ? line : line.slice(0, at);
            const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
            if (field === "event") type = val;
            else if (field === "data") data += (data ? "\n" : "") + val;
            else if (field === "id") id = val;
          }
          if (id !== null) lastId = id;
          if (data) onEvent(type, JSON.parse(data), id);
        }
      }
      return true;
    }
    (async () => {
      while (!stopped) {
        try {
          if ((await once()) === false) return;
        } catch (e) {
          if (stopped) return;
        }
        onState("reconnecting");
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    return () => { stopped = true; controller.abort(); };
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    location.hash = message ? "#" + encodeURIComponent(message) : "";
    location.reload();
  }

  // Sign-in form handling; calls start() once a token is there.
  function boot(start) {
    const form = document.getElementById("signin");
    const out = document.getElementById("signout");
    if (location.hash.length > 1) {
      document.getElementById("signin-error").textContent =
        decodeURIComponent(location.hash.slice(1));
    }
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = document.getElementById("token").value.trim().replace(/^Bearer\s+/i, "");
      if (!value) return;
      sessionStorage.setItem(KEY, value);
      history.replaceState(null, "", location.pathname);
      location.reload();
    });
    out.addEventListener("click", () => signOut(""));
    if (!token()) { form.hidden = false; return; }
    const c = claims();
    document.getElementById("who").textContent = c && c.sub ? c.sub : "";
    out.hidden = false;
    start();
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function when(ts) { return ts ? new Date(ts).toLocaleString() : ""; }

  return { api, stream, boot, el, when, newKey, token };
})();
