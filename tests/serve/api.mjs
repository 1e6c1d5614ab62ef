// api.mjs - `rmu serve` API correctness through the official `openai` npm client (and raw
// fetch for what the client hides): answers equal `rmu generate --temp 0`, streaming equals
// non-streaming, echo+logprobs equal `rmu logits` / `rmu eval`, n, stop strings, usage,
// logprobs, auth, OpenAI error shapes, tokenize, models, metrics, prefix reuse.
// Env: RMU, TMP_DIR, MODELS (":"-separated model folders; the first is the project's own
// tiny model with a chat template, a second one is stories260K when ../shared has it).
import OpenAI from "openai";
import { writeFileSync, readFileSync, cpSync, renameSync, rmSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { assert, check, startServer, http, assertError, readSSE, rmu, logprob, logits, modelConfig, TMP, failed } from "./lib.mjs";

const KEY = "sk-test-" + Math.random().toString(36).slice(2);
const models = process.env.MODELS.split(":").filter(Boolean);
const N = 24; // max_tokens of the comparisons

const PROMPTS = ["Once upon a time", "The little dog saw a big red ball and"];

async function suite(model, own) {
  const tag = model.split("/").pop();
  const srv = await startServer(model, ["--parallel", "4", "--ctx", "512"], { RMU_API_KEY: KEY });
  const client = new OpenAI({ baseURL: srv.base + "/v1", apiKey: KEY, maxRetries: 0, timeout: 60000 });
  const V = modelConfig(model).vocab_size;
  try {
    for (const [i, p] of PROMPTS.entries()) {
      await check(`${tag}: chat (${i ? "system + user" : "user"}) == rmu generate --chat --temp 0`, async () => {
        const messages = i ? [{ role: "system", content: "You tell stories." }, { role: "user", content: p }] : [{ role: "user", content: p }];
        const r = await client.chat.completions.create({ model: "x", messages, max_tokens: N, temperature: 0 });
        const args = ["generate", "-m", model, "-p", p, "--chat", "--temp", "0", "-n", String(N)];
        if (i) args.push("--system", "You tell stories.");
        const want = rmu(args);
        assert.equal(r.choices[0].message.content + "\n", want);
        assert.equal(r.choices[0].message.role, "assistant");
        assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
        assert.equal(r.object, "chat.completion");
        assert.ok(r.id.startsWith("chatcmpl-"));
      });
    }

    await check(`${tag}: chat streaming: joined deltas == non-streaming text, one finish, usage chunk`, async () => {
      const body = { model: "x", messages: [{ role: "user", content: PROMPTS[1] }], max_tokens: N, temperature: 0 };
      const full = await client.chat.completions.create(body);
      const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
      let text = "", finish = [], usage = null, n = 0, role = null;
      for await (const ck of stream) {
        n++;
        assert.equal(ck.object, "chat.completion.chunk");
        if (ck.usage) usage = ck.usage;
        for (const c of ck.choices) {
          if (c.delta.role) role = c.delta.role;
          if (c.delta.content) text += c.delta.content;
          if (c.finish_reason) finish.push(c.finish_reason);
        }
      }
      assert.equal(text, full.choices[0].message.content);
      assert.deepEqual(finish, [full.choices[0].finish_reason]);
      assert.equal(role, "assistant");
      const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
      assert.deepEqual(counts(usage), counts(full.usage)); /* cached_tokens differ: the 2nd reuses the 1st */
      assert.ok(usage.prompt_tokens_details.cached_tokens > 0);
      assert.ok(n >= 3);
    });

    await check(`${tag}: completions (echo) == rmu generate --temp 0 (prompt + continuation)`, async () => {
      const r = await client.completions.create({ model: "x", prompt: PROMPTS[0], max_tokens: N, temperature: 0, echo: true });
      assert.equal(r.choices[0].text + "\n", rmu(["generate", "-m", model, "-p", PROMPTS[0], "--temp", "0", "-n", String(N)]));
      const r2 = await client.completions.create({ model: "x", prompt: PROMPTS[0], max_tokens: N, temperature: 0 });
      assert.ok(r.choices[0].text.endsWith(r2.choices[0].text) && r2.choices[0].text.length > 0);
      assert.equal(r.object, "text_completion");
    });

    await check(`${tag}: completions echo+logprobs, max_tokens 0: prompt logprobs == log_softmax(rmu logits)`, async () => {
      const tk = await http(srv.base, "/tokenize", { key: KEY, body: { prompt: PROMPTS[1] } });
      const ids = tk.json.tokens;
      assert.ok(ids.length >= 5);
      const rows = logits(model, ids, V, `${TMP}/${tag}.logits.f32`);
      const r = await client.completions.create({ model: "x", prompt: ids, max_tokens: 0, echo: true, logprobs: 3, temperature: 0 });
      const lp = r.choices[0].logprobs;
      assert.equal(lp.tokens.length, ids.length);
      assert.equal(lp.text_offset.length, ids.length);
      assert.equal(lp.token_logprobs[0], null);
      assert.equal(lp.top_logprobs[0], null);
      for (let i = 1; i < ids.length; i++) {
        const want = logprob(rows[i - 1], ids[i]);
        assert.ok(Math.abs(lp.token_logprobs[i] - want) <= 2e-6 * (1 + Math.abs(want)), `token ${i}: ${lp.token_logprobs[i]} vs ${want}`);
        const tops = Object.values(lp.top_logprobs[i]);
        assert.ok(tops.length >= 1 && tops.length <= 3);
        let best = 0;
        for (let v = 1; v < V; v++) if (rows[i - 1][v] > rows[i - 1][best]) best = v;
        assert.ok(Math.abs(Math.max(...tops) - logprob(rows[i - 1], best)) <= 2e-6 * (1 + Math.abs(Math.max(...tops))));
      }
      assert.equal(r.choices[0].finish_reason, "length");
      assert.equal(r.usage.completion_tokens, 0);
      assert.equal(r.usage.prompt_tokens, ids.length);
    });

    if (own) await lmEval(srv, model, tag);

    await check(`${tag}: n=3 at temperature 0: three identical choices == the n=1 answer; usage adds up`, async () => {
      const body = { model: "x", messages: [{ role: "user", content: PROMPTS[0] }], max_tokens: N, temperature: 0 };
      const one = await client.chat.completions.create(body);
      const three = await client.chat.completions.create({ ...body, n: 3 });
      assert.deepEqual(three.choices.map((c) => c.index), [0, 1, 2]);
      for (const c of three.choices) assert.equal(c.message.content, one.choices[0].message.content);
      assert.equal(three.usage.prompt_tokens, one.usage.prompt_tokens);
      assert.equal(three.usage.completion_tokens, 3 * one.usage.completion_tokens);
      assert.equal(three.usage.total_tokens, three.usage.prompt_tokens + three.usage.completion_tokens);
    });

    await check(`${tag}: n=3 sampled with a seed: reproducible; streaming n=3 == non-streaming`, async () => {
      const body = { model: "x", prompt: PROMPTS[1], max_tokens: N, temperature: 1, top_p: 0.9, top_k: 40, seed: 1234, n: 3 };
      const a = await client.completions.create(body), b = await client.completions.create(body);
      assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
      const s = await client.completions.create({ ...body, stream: true });
      const texts = ["", "", ""];
      for await (const ck of s) for (const c of ck.choices) texts[c.index] += c.text;
      assert.deepEqual(texts, a.choices.map((c) => c.text));
    });

    await check(`${tag}: stop strings cut the text before the first match (plain and streamed)`, async () => {
      const body = { model: "x", prompt: PROMPTS[0], max_tokens: 40, temperature: 0 };
      const full = (await client.completions.create(body)).choices[0].text;
      assert.ok(full.length >= 8, "answer too short to test stops: " + JSON.stringify(full));
      const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 2);
      const want = full.slice(0, full.indexOf(stop));
      const r = await client.completions.create({ ...body, stop: [stop, "\u0001never"] });
      assert.equal(r.choices[0].text, want);
      assert.equal(r.choices[0].finish_reason, "stop");
      const s = await client.completions.create({ ...body, stop, stream: true });
      let t = "", fin;
      for await (const ck of s) for (const c of ck.choices) { t += c.text; fin = c.finish_reason || fin; }
      assert.equal(t, want);
      assert.equal(fin, "stop");
      const g = rmu(["generate", "-m", model, "-p", PROMPTS[0], "--temp", "0", "-n", "40", "--stop", stop]);
      assert.ok(g.endsWith(want + "\n"), "rmu generate --stop: " + JSON.stringify(g));
    });

    await check(`${tag}: usage: prompt tokens == /tokenize of the messages, completion tokens == logprob entries`, async () => {
      const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: PROMPTS[1] }];
      const tk = await http(srv.base, "/tokenize", { key: KEY, body: { messages } });
      const r = await client.chat.completions.create({ model: "x", messages, max_tokens: N, temperature: 0, logprobs: true, top_logprobs: 4 });
      assert.equal(r.usage.prompt_tokens, tk.json.count);
      assert.equal(r.usage.completion_tokens, r.choices[0].logprobs.content.length);
      assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
      for (const e of r.choices[0].logprobs.content) {
        assert.equal(e.top_logprobs.length, 4);
        for (let k = 1; k < 4; k++) assert.ok(e.top_logprobs[k - 1].logprob >= e.top_logprobs[k].logprob);
        assert.equal(e.top_logprobs[0].token, e.token); // greedy: the likeliest token
        assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6 && e.logprob <= 0);
        assert.ok(Array.isArray(e.bytes));
      }
    });

    await check(`${tag}: penalties and seeds: deterministic, valid`, async () => {
      const body = { model: "x", messages: [{ role: "user", content: PROMPTS[0] }], max_tokens: N, temperature: 0, frequency_penalty: 1.5, presence_penalty: 0.5 };
      const a = await client.chat.completions.create(body), b = await client.chat.completions.create(body);
      assert.equal(a.choices[0].message.content, b.choices[0].message.content);
      const c = await client.chat.completions.create({ ...body, temperature: 0.9, seed: 7 });
      const d = await client.chat.completions.create({ ...body, temperature: 0.9, seed: 7 });
      assert.equal(c.choices[0].message.content, d.choices[0].message.content);
    });

    await check(`${tag}: multi-turn: the cached prefix is reused and the answer equals a cold server's`, async () => {
      const u1 = { role: "user", content: PROMPTS[0] };
      const a1 = await client.chat.completions.create({ model: "x", messages: [u1], max_tokens: 12, temperature: 0 });
      const messages = [u1, { role: "assistant", content: a1.choices[0].message.content }, { role: "user", content: "And then?" }];
      const warm = await client.chat.completions.create({ model: "x", messages, max_tokens: N, temperature: 0 });
      assert.ok(warm.usage.prompt_tokens_details.cached_tokens > 0, "nothing reused: " + JSON.stringify(warm.usage));
      const cold = await startServer(model, ["--parallel", "1", "--ctx", "512"]);
      try {
        const c2 = new OpenAI({ baseURL: cold.base + "/v1", apiKey: "none", maxRetries: 0 });
        const r = await c2.chat.completions.create({ model: "x", messages, max_tokens: N, temperature: 0 });
        assert.equal(r.usage.prompt_tokens_details.cached_tokens, 0);
        assert.equal(r.choices[0].message.content, warm.choices[0].message.content);
      } finally {
        await cold.stop();
      }
    });

    if (!own) return;

    await check(`${tag}: auth: 401 without or with a wrong key (constant-time compare), health and metrics open`, async () => {
      assertError(await http(srv.base, "/v1/chat/completions", { body: { messages: [{ role: "user", content: "hi" }] } }), 401, { code: "invalid_api_key" });
      assertError(await http(srv.base, "/v1/models", { method: "GET", key: KEY + "x" }), 401, { code: "invalid_api_key" });
      assertError(await http(srv.base, "/v1/completions", { key: KEY.slice(0, -1), body: { prompt: "a" } }), 401);
      const bad = new OpenAI({ baseURL: srv.base + "/v1", apiKey: "wrong", maxRetries: 0 });
      await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
      assert.equal((await http(srv.base, "/health", { method: "GET" })).status, 200);
      assert.equal((await http(srv.base, "/metrics", { method: "GET" })).status, 200);
    });

    await check(`${tag}: errors have OpenAI's shape: 400 (JSON, roles, types, ranges, context), 404, 405`, async () => {
      const post = (body, raw) => http(srv.base, "/v1/chat/completions", { key: KEY, body, raw });
      const msg = [{ role: "user", content: "hi" }];
      assertError(await post(undefined, "{\"messages\": ["), 400, { type: "invalid_request_error", param: null });
      assertError(await post(undefined, "[1, 2]"), 400, { type: "invalid_request_error" });
      assertError(await post(undefined, ""), 400, { type: "invalid_request_error" });
      assertError(await post({ messages: [{ role: "wizard", content: "hi" }] }), 400, { param: "messages[0].role" });
      assertError(await post({ messages: [{ role: "user" }] }), 400, { param: "messages[0].content" });
      assertError(await post({ messages: [{ role: "user", content: 5 }] }), 400, { param: "messages[0].content" });
      assertError(await post({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), 400, { param: "messages[0].content[0]" });
      assertError(await post({ messages: "hi" }), 400, { param: "messages" });
      assertError(await post({}), 400, { param: "messages" });
      assertError(await post({ messages: [] }), 400, { param: "messages" });
      assertError(await post({ messages: msg, temperature: "hot" }), 400, { param: "temperature" });
      assertError(await post({ messages: msg, temperature: 3 }), 400, { param: "temperature" });
      assertError(await post({ messages: msg, top_p: 0 }), 400, { param: "top_p" });
      assertError(await post({ messages: msg, n: 0 }), 400, { param: "n" });
      assertError(await post({ messages: msg, max_tokens: -1 }), 400, { param: "max_tokens" });
      assertError(await post({ messages: msg, max_tokens: 1.5 }), 400, { param: "max_tokens" });
      assertError(await post({ messages: msg, stream: "yes" }), 400, { param: "stream" });
      assertError(await post({ messages: msg, stop: Array(17).fill("x") }), 400, { param: "stop" });
      assertError(await post({ messages: msg, stop: [1] }), 400, { param: "stop[0]" });
      assertError(await post({ messages: msg, top_logprobs: 3 }), 400, { param: "top_logprobs" });
      assertError(await post({ messages: msg, tools: [{ type: "function" }] }), 400, { param: "tools" });
      assertError(await post({ messages: msg, max_tokens: 600 }), 400, { code: "context_length_exceeded", param: "messages" });
      assertError(await post({ messages: [{ role: "user", content: "word ".repeat(700) }] }), 400, { code: "context_length_exceeded" });
      const comp = (body) => http(srv.base, "/v1/completions", { key: KEY, body });
      assertError(await comp({ prompt: [] }), 400, { param: "prompt" });
      assertError(await comp({ prompt: [1, "a"] }), 400, { param: "prompt[1]" });
      assertError(await comp({ prompt: [V + 5] }), 400, { param: "prompt" });
      assertError(await comp({ prompt: [-1] }), 400, { param: "prompt[0]" });
      assertError(await comp({ prompt: "a", logprobs: 50 }), 400, { param: "logprobs" });
      assertError(await http(srv.base, "/v1/nope", { key: KEY, body: {} }), 404);
      assertError(await http(srv.base, "/v1/chat/completions", { method: "GET", key: KEY }), 405);
      const r405 = await http(srv.base, "/v1/completions", { method: "PUT", key: KEY, body: {} });
      assertError(r405, 405);
      assert.equal(r405.headers.get("allow"), "POST");
      await assert.rejects(client.chat.completions.create({ model: "x", messages: [{ role: "tool", content: "x" }] }),
        (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === "messages[0].role");
      // the server still answers after all that
      const r = await client.chat.completions.create({ model: "x", messages: msg, max_tokens: 3, temperature: 0 });
      assert.ok(r.choices.length === 1);
    });

    await check(`${tag}: /tokenize and /detokenize round trip; /v1/models; GET / serves the page`, async () => {
      const t = await http(srv.base, "/tokenize", { key: KEY, body: { prompt: "Hello world" } });
      assert.equal(t.status, 200);
      assert.equal(t.json.count, t.json.tokens.length);
      assert.equal(t.json.max_model_len, 512);
      const t2 = await http(srv.base, "/tokenize", { key: KEY, body: { content: "Hello world", add_special_tokens: false } });
      assert.deepEqual(t2.json.tokens, t.json.tokens.slice(1)); // no BOS
      const d = await http(srv.base, "/detokenize", { key: KEY, body: { tokens: t.json.tokens } });
      assert.equal(d.json.prompt, "Hello world");
      assertError(await http(srv.base, "/detokenize", { key: KEY, body: { tokens: [V + 1] } }), 400, { param: "tokens" });
      const m = await client.models.list();
      assert.equal(m.data[0].id, tag);
      const page = await fetch(srv.base + "/");
      const html = await page.text();
      assert.equal(page.status, 200);
      assert.ok(page.headers.get("content-type").startsWith("text/html"));
      assert.ok(html.includes("<script>") && !/(src|href)=["']?(https?:)?\/\//.test(html), "the page must not load anything external");
    });

    await check(`${tag}: /metrics: Prometheus text with requests, tokens, queue, slots, tok/s`, async () => {
      const r = await http(srv.base, "/metrics", { method: "GET" });
      assert.ok(r.headers.get("content-type").startsWith("text/plain"));
      const val = (name) => { const m = r.text.match(new RegExp("^" + name.replace(/[{}"/]/g, "\\$&") + " ([0-9.e+-]+)$", "m")); return m ? Number(m[1]) : NaN; };
      assert.ok(val('rmu_http_requests_total{endpoint="/v1/chat/completions",code="200"}') >= 5);
      assert.ok(val('rmu_http_requests_total{endpoint="/v1/chat/completions",code="400"}') >= 10);
      assert.ok(val('rmu_http_requests_total{endpoint="/v1/models",code="401"}') >= 1);
      assert.ok(val("rmu_generation_tokens_total") > 50);
      assert.ok(val("rmu_prompt_tokens_total") > 10);
      assert.ok(val("rmu_prompt_tokens_cached_total") > 0);
      assert.equal(val("rmu_queue_depth"), 0);
      assert.equal(val("rmu_active_slots"), 0);
      assert.equal(val("rmu_slots"), 4);
      assert.ok(val("rmu_generation_tokens_per_second") >= 0);
      assert.ok(val("rmu_time_to_first_token_seconds_count") > 0);
      for (const line of r.text.split("\n")) if (line && !line.startsWith("#")) assert.match(line, /^[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/);
    });
  } finally {
    const ex = await srv.stop();
    await check(`${tag}: SIGTERM on an idle server: exit status 0`, () => assert.equal(ex.code, 0, srv.log));
  }
}

// The listener starts before the model loads: config.json is a FIFO, so loading waits until
// the test writes it.
async function loading(model) {
  await check("serve: /health and the API answer 503 while the model loads, then 200", async () => {
    const dir = `${TMP}/fifo-model`;
    rmSync(dir, { recursive: true, force: true });
    cpSync(model, dir, { recursive: true });
    const cfg = readFileSync(`${dir}/config.json`);
    rmSync(`${dir}/config.json`);
    execFileSync("mkfifo", [`${dir}/config.json`]);
    const proc = spawn(process.env.RMU, ["serve", "-m", dir, "--port", "0"], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "", written = false;
    proc.stderr.on("data", (d) => (log += d));
    const exited = new Promise((r) => proc.on("exit", (code) => r(code)));
    try {
      while (!/listening on http:\/\/[^ ]*:(\d+)\//.test(log)) await new Promise((r) => setTimeout(r, 20));
      const base = `http://127.0.0.1:${log.match(/listening on http:\/\/[^ ]*:(\d+)\//)[1]}`;
      const h = await http(base, "/health", { method: "GET" });
      assert.equal(h.status, 503);
      assert.equal(h.json.status, "loading");
      assertError(await http(base, "/v1/completions", { body: { prompt: "a" } }), 503, { code: "model_loading" });
      writeFileSync(`${dir}/config.json`, cfg); // unblocks the load
      written = true;
      let st = 0;
      for (let i = 0; i < 200 && st !== 200; i++) { await new Promise((r) => setTimeout(r, 25)); st = (await http(base, "/health", { method: "GET" })).status; }
      assert.equal(st, 200);
      assert.equal((await http(base, "/v1/completions", { body: { prompt: "a", max_tokens: 2 } })).status, 200);
    } finally {
      if (!written) writeFileSync(`${dir}/config.json`, cfg); // the loader must not wait forever
      proc.kill("SIGTERM");
      assert.equal(await exited, 0, log);
    }
  });
}

// lm-evaluation-harness's local-completions scoring (echo, logprobs 1, max_tokens 1, token id
// prompts in batches, sum of token_logprobs[ctxlen:-1], greedy when each equals the top one)
// gives rmu eval's logliks.
async function lmEval(srv, model, tag) {
  await check(`${tag}: lm-eval local-completions scoring through the server == rmu eval's logliks`, async () => {
    const rows = [];
    const words = "the cat dog sun moon red blue tree river stone bird".split(" ");
    for (let i = 0; i < 6; i++) {
      const q = Array.from({ length: 4 + (i * 3) % 9 }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(" ");
      rows.push({ question: q + "?", choices: ["red", "blue sky", "a tree", "stone"], answer: i % 4 });
    }
    writeFileSync(`${TMP}/mcq.jsonl`, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    rmu(["eval", "-m", model, "--tasks", "mcq", "--data", `${TMP}/mcq.jsonl`, "--quiet", "--dump-requests", `${TMP}/dump.json`, "--output", `${TMP}/res.json`]);
    const reqs = JSON.parse(readFileSync(`${TMP}/dump.json`, "utf8"));
    assert.ok(reqs.length === 24);
    for (let b = 0; b < reqs.length; b += 4) { // batches of prompts, as lm-eval's batch_size
      const batch = reqs.slice(b, b + 4);
      const r = await http(srv.base, "/v1/completions", { key: KEY, body: {
        model: "x", prompt: batch.map((q) => [...q.context_ids, ...q.continuation_ids]), max_tokens: 1, temperature: 0, logprobs: 1, echo: true, seed: 1234 } });
      assert.equal(r.status, 200, r.text);
      const choices = r.json.choices.sort((x, y) => x.index - y.index);
      batch.forEach((q, k) => {
        const ctxlen = q.context_ids.length, lp = choices[k].logprobs;
        const tl = lp.token_logprobs.slice(ctxlen, -1), tops = lp.top_logprobs.slice(ctxlen, -1);
        const ll = tl.reduce((a, x) => a + x, 0);
        const greedy = tl.every((t, i) => t === Math.max(...Object.values(tops[i])));
        assert.ok(Math.abs(ll - q.loglik) < 1e-4, `request ${b + k}: ${ll} vs rmu eval ${q.loglik}`);
        assert.equal(greedy, q.greedy, `request ${b + k}: greedy`);
        assert.equal(lp.token_logprobs.length, ctxlen + q.continuation_ids.length + 1);
      });
    }
  });
}

// SKIP_FIRST: the first (own) model was covered by another run
for (const [i, m] of models.entries()) if (!(i === 0 && process.env.SKIP_FIRST)) await suite(m, i === 0);
if (!process.env.SKIP_FIRST) await loading(models[0]);
process.exit(failed() ? 1 : 0);
