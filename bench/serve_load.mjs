#!/usr/bin/env node
// serve_load.mjs - aggregate decode throughput and time to first token of an OpenAI-
// compatible server (rmu serve, llama-server) under C concurrent streams. No dependencies
// (Node >= 18 fetch). Every stream gets the same short prompt and generates exactly
// --tokens tokens (ignore_eos), greedy.
//
//   node bench/serve_load.mjs --url http://127.0.0.1:8080 --streams 1,4,16 --tokens 32
//
// Per concurrency C it prints: wall time, aggregate tok/s over the whole run (prefill
// included), decode tok/s (tokens that arrive while all C streams are decoding together:
// between the last stream's first token and the first stream's end), and time to first
// token (mean / max).
const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) => (x.startsWith("--") ? [...a, [x.slice(2), all[i + 1]]] : a), []));
const url = (args.url || "http://127.0.0.1:8080").replace(/\/$/, "");
const streams = (args.streams || "1,4,16").split(",").map(Number);
const tokens = Number(args.tokens || 32);
const prompt = args.prompt || "Once upon a time";
const key = args.key || process.env.RMU_API_KEY;
const warmup = Number(args.warmup ?? 1); // untimed requests first (page cache, lazy init)

// A kept-alive connection the server has just closed fails at once: try again (twice).
async function post(body, tries = 3) {
  try {
    return await fetch(url + "/v1/completions", body);
  } catch (e) {
    if (tries <= 1) throw e;
    return post(body, tries - 1);
  }
}

async function one(ntok = tokens) {
  const t0 = performance.now();
  const r = await post({
    method: "POST",
    headers: { "Content-Type": "application/json", ...(key ? { Authorization: "Bearer " + key } : {}) },
    body: JSON.stringify({ model: "m", prompt, max_tokens: ntok, temperature: 0, stream: true, ignore_eos: true,
                           stream_options: { include_usage: true } }),
  });
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = "", first = 0, chunks = 0, usage = 0;
  const times = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i).trim();
      buf = buf.slice(i + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage && j.usage.completion_tokens) usage = j.usage.completion_tokens;
      if ((j.choices || []).some((c) => c.text)) {
        chunks++;
        times.push(performance.now());
        if (!first) first = times[0];
      }
    }
  }
  return { start: t0, first, end: performance.now(), n: usage || chunks, chunks, times };
}

for (let i = 0; i < warmup; i++) await one(4);
console.log(`# ${url}: prompt ${JSON.stringify(prompt)}, ${tokens} tokens per stream, ${warmup} warm-up request(s)`);
console.log("streams  wall_s  agg_tok/s  decode_tok/s  ttft_mean_s  ttft_max_s");
const base = {};
for (const c of streams) {
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: c }, one));
  const wall = (performance.now() - t0) / 1000;
  const total = res.reduce((a, r) => a + r.n, 0);
  // the window where every stream decodes: tokens after the last first token, up to the
  // first stream's last token (a chunk may carry several tokens: scaled by n / chunks)
  const lastFirst = Math.max(...res.map((r) => r.first));
  const firstEnd = Math.min(...res.map((r) => r.times[r.times.length - 1]));
  const inWin = res.reduce((a, r) => a + r.times.filter((t) => t > lastFirst && t <= firstEnd).length * r.n / r.chunks, 0);
  const decode = firstEnd > lastFirst ? inWin / ((firstEnd - lastFirst) / 1000) : NaN;
  const ttft = res.map((r) => (r.first - r.start) / 1000);
  if (!base.decode) Object.assign(base, { decode, agg: total / wall });
  console.log(`${String(c).padStart(7)}  ${wall.toFixed(2).padStart(6)}  ${(total / wall).toFixed(2).padStart(9)}  ` +
    `${decode.toFixed(2).padStart(12)}  ${(ttft.reduce((a, x) => a + x, 0) / c).toFixed(3).padStart(11)}  ${Math.max(...ttft).toFixed(3).padStart(10)}` +
    `   (x${(decode / base.decode).toFixed(2)} decode, x${(total / wall / base.agg).toFixed(2)} aggregate vs ${streams[0]} stream${streams[0] > 1 ? "s" : ""})`);
}
