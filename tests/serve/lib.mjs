// lib.mjs - what the `rmu serve` test scripts share: TAP-ish result lines ("ok - NAME",
// "not ok - NAME: WHY", "skip - NAME: WHY", counted by tests/run.sh), starting a server on a
// free port (it prints the port), raw SSE reading, running the rmu CLI.
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

export { assert };
export const RMU = process.env.RMU;
export const TMP = process.env.TMP_DIR;

let failures = 0;
export function ok(name) { console.log(`ok - ${name}`); }
export function fail(name, why) { failures++; console.log(`not ok - ${name}: ${String(why).replace(/\s+/g, " ").slice(0, 400)}`); }
export function skip(name, why) { console.log(`skip - ${name}: ${why}`); }
export function failed() { return failures; }

// Runs fn; prints ok, or not ok with the error. A test never throws past here.
export async function check(name, fn) {
  try {
    await fn();
    ok(name);
  } catch (e) {
    fail(name, e && e.stack ? e.stack.split("\n").slice(0, 3).join(" | ") : e);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts `rmu serve -m model --port 0 ...args`; resolves once it prints "ready".
export function startServer(model, args = [], env = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(RMU, ["serve", "-m", model, "--port", "0", ...args], {
      env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "", port = 0, done = false;
    const timer = setTimeout(() => { if (!done) { done = true; proc.kill("SIGKILL"); reject(new Error("server did not start: " + log)); } }, 30000);
    proc.stderr.on("data", (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/[^ ]*:(\d+)\//);
      if (m) port = Number(m[1]);
      if (!done && port && /ready:/.test(log)) {
        done = true;
        clearTimeout(timer);
        const exited = new Promise((r) => proc.on("exit", (code, sig) => r({ code, sig })));
        resolve({
          proc, port, base: `http://127.0.0.1:${port}`, get log() { return log; }, exited,
          async stop(sig = "SIGTERM", ms = 20000) {
            proc.kill(sig);
            const t = setTimeout(() => proc.kill("SIGKILL"), ms);
            const r = await exited;
            clearTimeout(t);
            return r;
          },
        });
      }
    });
    proc.on("exit", (code) => { if (!done) { done = true; clearTimeout(timer); reject(new Error(`server exited ${code}: ${log}`)); } });
  });
}

// POST/GET JSON with fetch; returns {status, headers, json, text}.
export async function http(base, path, { method = "POST", body, key, headers = {}, raw } = {}) {
  const h = { ...headers };
  if (body !== undefined && !raw) h["Content-Type"] = "application/json";
  if (key) h["Authorization"] = "Bearer " + key;
  const r = await fetch(base + path, { method, headers: h, body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, json, text };
}

// The OpenAI error shape: {"error": {"message", "type", "param", "code"}} with the given fields.
export function assertError(res, status, want = {}) {
  assert.equal(res.status, status, `status ${res.status}, body ${res.text}`);
  const e = res.json && res.json.error;
  assert.ok(e, "no error object: " + res.text);
  assert.equal(typeof e.message, "string");
  assert.ok(e.message.length > 0);
  for (const k of ["type", "param", "code"]) assert.ok(k in e, `error.${k} missing: ${res.text}`);
  for (const [k, v] of Object.entries(want)) assert.equal(e[k], v, `error.${k}: ${res.text}`);
}

// Reads a streaming response body as SSE events: the parsed JSON of each "data:" line
// (the string "[DONE]" for the end marker).
export async function readSSE(res, onEvent) {
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = "";
  const events = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      assert.ok(ev.startsWith("data: "), "not an SSE data event: " + ev);
      const d = ev.slice(6);
      const v = d === "[DONE]" ? d : JSON.parse(d);
      events.push(v);
      if (onEvent && (await onEvent(v, events)) === false) { await reader.cancel(); return events; }
    }
  }
  assert.equal(buf, "", "trailing bytes after the last event");
  return events;
}

// `rmu ARGS...` -> stdout (throws on a non-zero exit).
export function rmu(args, opts = {}) {
  return execFileSync(RMU, args, { encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], ...opts });
}

// log_softmax(row)[tok] as rmu eval computes it (double, max-shifted).
export function logprob(row, tok) {
  let mx = -Infinity;
  for (const v of row) if (v > mx) mx = v;
  let s = 0;
  for (const v of row) s += Math.exp(v - mx);
  return row[tok] - mx - Math.log(s);
}

// `rmu logits` for ids: rows of V floats.
export function logits(model, ids, V, out) {
  rmu(["logits", "-m", model, "--ids", ids.join(" "), "--out", out]);
  const b = readFileSync(out);
  const f = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  const rows = [];
  for (let i = 0; i < ids.length; i++) rows.push(f.subarray(i * V, (i + 1) * V));
  return rows;
}

export function modelConfig(dir) { return JSON.parse(readFileSync(dir + "/config.json", "utf8")); }
