// load.mjs - `rmu serve` under load and abuse: 32 simultaneous greedy streams equal their
// sequential answers (batch invariance), disconnecting clients free their slots at once,
// body limit (413), queue limit (429), per-request time limit, a slow client, an idle
// connection, SIGTERM during streams (clean ends, exit 0).
// Env: RMU, TMP_DIR, MODEL (stories260K when ../shared has it, else the tiny model), REF
// ("1" when MODEL is stories260K).
import OpenAI from "openai";
import net from "node:net";
import { assert, check, startServer, http, assertError, readSSE, rmu, sleep, failed } from "./lib.mjs";

const MODEL = process.env.MODEL;
const tag = MODEL.split("/").pop();

function metricsOf(text) {
  const m = {};
  for (const line of text.split("\n")) {
    const k = line.match(/^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/);
    if (k) m[k[1]] = Number(k[2]);
  }
  return m;
}
const metrics = async (srv) => metricsOf((await http(srv.base, "/metrics", { method: "GET" })).text);

// Streams a request with fetch; resolves with the joined text, finish reasons and events.
async function stream(base, path, body, { onEvent, signal } = {}) {
  const r = await fetch(base + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...body, stream: true }), signal });
  assert.equal(r.status, 200);
  assert.ok(r.headers.get("content-type").startsWith("text/event-stream"));
  const events = await readSSE(r, onEvent);
  let text = "", finish = null;
  for (const e of events) {
    if (e === "[DONE]" || !e.choices) continue;
    for (const c of e.choices) {
      text += c.text !== undefined ? c.text : c.delta.content || "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, events };
}

// The 32 requests: chat and completions, short and long prompts (long ones are prefilled in
// chunks of 16 beside the running streams), a one-token prompt, different lengths.
function requests() {
  const words = "Tim and Sue went to the park to play with a big red ball under the tall green tree".split(" ");
  const reqs = [];
  for (let i = 0; i < 32; i++) {
    const len = i % 8 === 0 ? 120 + 7 * i : 3 + ((i * 5) % 23);
    const text = Array.from({ length: len }, (_, k) => words[(k * 3 + i) % words.length]).join(" ");
    const max_tokens = 16 + ((i * 13) % 49);
    if (i === 5) reqs.push({ path: "/v1/completions", body: { prompt: [1], max_tokens, temperature: 0 } });
    else if (i % 2) reqs.push({ path: "/v1/chat/completions", body: { messages: [{ role: "user", content: text }], max_tokens, temperature: 0 } });
    else reqs.push({ path: "/v1/completions", body: { prompt: text, max_tokens, temperature: 0 } });
  }
  return reqs;
}

async function concurrency() {
  const srv = await startServer(MODEL, ["--parallel", "8", "--ctx", "2048", "--prefill-chunk", "16", "--max-queue", "64"]);
  try {
    const reqs = requests();
    const seq = [];
    await check(`${tag}: sequential greedy answers (the reference) == rmu generate --temp 0`, async () => {
      for (const q of reqs) {
        const r = await http(srv.base, q.path, { body: q.body });
        assert.equal(r.status, 200, r.text);
        const c = r.json.choices[0];
        seq.push({ text: c.text !== undefined ? c.text : c.message.content, finish: c.finish_reason });
      }
      for (const i of [1, 2]) { // one chat, one completion through the CLI
        const q = reqs[i], p = q.body.prompt || q.body.messages[0].content;
        const args = ["generate", "-m", MODEL, "-p", p, "--temp", "0", "-n", String(q.body.max_tokens)];
        const out = rmu(q.body.messages ? [...args, "--chat"] : args);
        assert.ok(out.endsWith(seq[i].text + "\n") && seq[i].text.length > 0, `request ${i}: ${JSON.stringify(out)} vs ${JSON.stringify(seq[i].text)}`);
      }
    });
    await check(`${tag}: 32 simultaneous streams (8 slots, chunked prefill): all complete, each == its sequential answer`, async () => {
      const m0 = await metrics(srv);
      const t0 = Date.now();
      const res = await Promise.all(reqs.map((q) => stream(srv.base, q.path, q.body)));
      const dt = (Date.now() - t0) / 1000;
      res.forEach((r, i) => {
        assert.equal(r.text, seq[i].text, `request ${i} differs`);
        assert.equal(r.finish, seq[i].finish, `request ${i} finish`);
        assert.equal(r.events[r.events.length - 1], "[DONE]");
      });
      const m1 = await metrics(srv);
      const rows = m1.rmu_forward_rows_total - m0.rmu_forward_rows_total, steps = m1.rmu_forward_steps_total - m0.rmu_forward_steps_total;
      assert.ok(rows / steps > 3, `batching: ${rows} rows in ${steps} steps`);
      // the last [DONE] can reach the client a moment before the engine's step frees its slot
      let active = m1.rmu_active_slots;
      for (let i = 0; i < 100 && active !== 0; i++) {
        await sleep(20);
        active = (await metrics(srv)).rmu_active_slots;
      }
      assert.equal(active, 0, "a finished stream still holds a slot after 2 s");
      console.log(`# 32 streams in ${dt.toFixed(2)} s, ${(rows / steps).toFixed(1)} rows per forward`);
    });
  } finally {
    await srv.stop();
  }
}

async function disconnects() {
  const srv = await startServer(MODEL, ["--parallel", "2", "--ctx", "4096"]);
  try {
    await check(`${tag}: clients that disconnect mid-stream free their slots at once`, async () => {
      const m0 = await metrics(srv);
      const aborts = [0, 1].map(async () => { // the client reads 3 events, then closes the connection
        let n = 0;
        await stream(srv.base, "/v1/completions", { prompt: "Once upon a time", max_tokens: 4000, temperature: 0.8, ignore_eos: true }, {
          onEvent: () => (++n === 3 ? false : undefined),
        });
        return n;
      });
      assert.deepEqual(await Promise.all(aborts), [3, 3]);
      const t0 = Date.now();
      let m;
      do { await sleep(20); m = await metrics(srv); } while (m.rmu_active_slots > 0 && Date.now() - t0 < 3000);
      const freed = Date.now() - t0;
      assert.equal(m.rmu_active_slots, 0);
      assert.ok(freed < 1000, `slots freed after ${freed} ms`);
      assert.ok(m.rmu_sequences_aborted_total - m0.rmu_sequences_aborted_total === 2);
      assert.ok(m.rmu_client_disconnects_total - m0.rmu_client_disconnects_total === 2);
      // a non-streaming client that leaves: its slot is freed too
      const sock = net.connect(srv.port, "127.0.0.1");
      const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 4000, ignore_eos: true });
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await sleep(100);
      sock.destroy();
      const t1 = Date.now();
      do { await sleep(20); m = await metrics(srv); } while (m.rmu_sequences_aborted_total - m0.rmu_sequences_aborted_total < 3 && Date.now() - t1 < 3000);
      assert.equal(m.rmu_sequences_aborted_total - m0.rmu_sequences_aborted_total, 3);
      const r = await http(srv.base, "/v1/completions", { body: { prompt: "Hi", max_tokens: 4, temperature: 0 } });
      assert.equal(r.status, 200);
    });
  } finally {
    await srv.stop();
  }
}

async function limits() {
  const srv = await startServer(MODEL, ["--parallel", "1", "--max-queue", "1", "--max-body", "4096", "--idle-timeout", "2", "--ctx", "4096"]);
  try {
    await check(`${tag}: a body over --max-body gets 413 in OpenAI's shape (with or without Content-Length)`, async () => {
      const big = JSON.stringify({ prompt: "x".repeat(10000) });
      assertError(await http(srv.base, "/v1/completions", { raw: big, headers: { "Content-Type": "application/json" } }), 413, { code: "request_too_large" });
      // chunked upload: no Content-Length
      const r = await fetch(srv.base + "/v1/completions", {
        method: "POST", duplex: "half", headers: { "Content-Type": "application/json" },
        body: new ReadableStream({ start(c) { for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode("x".repeat(1000))); c.close(); } }),
      }).catch((e) => e);
      if (!(r instanceof Error)) assertError({ status: r.status, json: await r.json(), text: "" }, 413);
      const ok = await http(srv.base, "/v1/completions", { body: { prompt: "Hi", max_tokens: 2 } });
      assert.equal(ok.status, 200);
    });

    await check(`${tag}: a full queue answers 429 (rate_limit_exceeded) and the openai client sees RateLimitError`, async () => {
      const ac = new AbortController();
      let started;
      const started_p = new Promise((r) => (started = r));
      const long = stream(srv.base, "/v1/completions", { prompt: "Once", max_tokens: 3000, ignore_eos: true }, { signal: ac.signal, onEvent: (e) => e.choices && e.choices[0].text && started() }).catch(() => null);
      await started_p; // a token came: the slot is busy (the first, empty chunk is sent before the request is in a slot)
      const queued = http(srv.base, "/v1/completions", { body: { prompt: "Hi", max_tokens: 2 } });
      await sleep(100);
      assertError(await http(srv.base, "/v1/completions", { body: { prompt: "Hi", max_tokens: 2 } }), 429, { type: "rate_limit_exceeded", code: "queue_full" });
      const client = new OpenAI({ baseURL: srv.base + "/v1", apiKey: "none", maxRetries: 0 });
      await assert.rejects(client.completions.create({ model: "x", prompt: "Hi", max_tokens: 2 }), (e) => e instanceof OpenAI.RateLimitError && e.status === 429);
      ac.abort();
      await long;
      assert.equal((await queued).status, 200);
    });

    await check(`${tag}: a slow client does not hold up others and still gets every event`, async () => {
      const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 600, temperature: 0, stream: true, ignore_eos: true });
      const sock = net.connect(srv.port, "127.0.0.1");
      sock.pause(); // reads nothing for now
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      await sleep(1500); // it generated everything into its buffer meanwhile: the slot is free again
      const t0 = Date.now();
      const r = await http(srv.base, "/v1/completions", { body: { prompt: "Hi", max_tokens: 8, temperature: 0 } });
      assert.equal(r.status, 200);
      assert.ok(Date.now() - t0 < 1000, `another request took ${Date.now() - t0} ms`);
      let data = "";
      sock.on("data", (d) => (data += d));
      const closed = new Promise((res) => sock.on("close", res));
      for (let i = 0; i < 20; i++) { sock.resume(); await sleep(10); sock.pause(); } // slowly
      sock.resume();
      await closed;
      assert.ok(data.startsWith("HTTP/1.1 200"), data.slice(0, 100));
      assert.ok(data.includes("data: [DONE]"), "no [DONE]: " + data.slice(-200));
      const want = await http(srv.base, "/v1/completions", { body: { prompt: "Once upon a time", max_tokens: 600, temperature: 0, ignore_eos: true } });
      const got = [...data.matchAll(/^data: (\{.*\})\r?$/gm)].map((m) => JSON.parse(m[1]).choices.map((c) => c.text).join("")).join("");
      assert.equal(got, want.json.choices[0].text);
    });

    await check(`${tag}: an idle connection is closed after --idle-timeout`, async () => {
      const sock = net.connect(srv.port, "127.0.0.1");
      const t0 = Date.now();
      sock.write("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"); // headers never finished
      await new Promise((res) => sock.on("close", res));
      const dt = (Date.now() - t0) / 1000;
      assert.ok(dt >= 1.5 && dt < 6, `closed after ${dt} s`);
    });
  } finally {
    await srv.stop();
  }
  const srv2 = await startServer(MODEL, ["--parallel", "1", "--timeout", "0.5", "--ctx", "4096"]);
  try {
    await check(`${tag}: --timeout: long requests stop at their time limit (finish_reason length), queued time included`, async () => {
      const t0 = Date.now();
      const body = { prompt: "Once upon a time", max_tokens: 4000, temperature: 0.9, ignore_eos: true };
      const [a, b] = await Promise.all([
        http(srv2.base, "/v1/completions", { body }),
        sleep(100).then(() => http(srv2.base, "/v1/completions", { body })), // waits for the one slot
      ]);
      const dt = (Date.now() - t0) / 1000;
      for (const r of [a, b]) {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.choices[0].finish_reason, "length");
        assert.ok(r.json.usage.completion_tokens < 4000, "finished before the limit: test too weak");
      }
      assert.ok(b.json.usage.completion_tokens < a.json.usage.completion_tokens, "the queued one had less time");
      assert.ok(dt < 3, `took ${dt} s`);
      let m, t1 = Date.now();
      do m = await metrics(srv2); while (m.rmu_requests_timed_out_total < 2 && Date.now() - t1 < 1000);
      assert.ok(m.rmu_requests_timed_out_total >= 2);
    });
  } finally {
    await srv2.stop();
  }
}

async function sigterm() {
  const srv = await startServer(MODEL, ["--parallel", "3", "--ctx", "4096", "--shutdown-grace", "1"]);
  await check(`${tag}: SIGTERM during streams: every stream ends cleanly ([DONE]), a queued one gets an error event, exit 0`, async () => {
    let started = 0, go;
    const all = new Promise((r) => (go = r));
    const body = { prompt: "Once upon a time", max_tokens: 4000, temperature: 0.9, ignore_eos: true };
    const streams = [0, 1, 2].map(() => stream(srv.base, "/v1/completions", body, { onEvent: (e, evs) => { if (evs.length === 2 && ++started === 3) go(); } }));
    await all;
    const queued = stream(srv.base, "/v1/completions", { ...body, max_tokens: 5 });
    await sleep(100);
    const t0 = Date.now();
    const ex = await srv.stop("SIGTERM");
    const dt = (Date.now() - t0) / 1000;
    assert.equal(ex.code, 0, srv.log);
    assert.ok(dt < 5, `exit took ${dt} s`);
    for (const r of await Promise.all(streams)) {
      assert.equal(r.events[r.events.length - 1], "[DONE]");
      assert.ok(["abort", "length", "stop"].includes(r.finish), "finish " + r.finish);
    }
    const q = await queued;
    assert.ok(q.events.some((e) => e.error && /shutting down/.test(e.error.message)), JSON.stringify(q.events).slice(0, 300));
    assert.equal(q.events[q.events.length - 1], "[DONE]");
    await assert.rejects(fetch(srv.base + "/health"));
  });
}

await concurrency();
await disconnects();
await limits();
await sigterm();
process.exit(failed() ? 1 : 0);
