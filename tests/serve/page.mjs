// page.mjs - the built-in chat page (GET /) in a real browser: headless Chromium driven by
// playwright-core loads it, sends a message, and the test reads the streamed reply from the
// DOM (several partial texts seen, the final text equal to the API's greedy answer), stops a
// long reply with the Stop button (the slot is freed), and keeps the conversation for the
// next turn. A screenshot is kept in TMP_DIR/page.png.
// Env: RMU, TMP_DIR, MODEL, CHROMIUM (the browser binary).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { assert, check, startServer, http, sleep, TMP, failed } from "./lib.mjs";

const MODEL = process.env.MODEL, tag = MODEL.split("/").pop();
const KEY = "page-key-" + Date.now();

const srv = await startServer(MODEL, ["--parallel", "2", "--ctx", "4096"], { RMU_API_KEY: KEY });
const profile = mkdtempSync(`${TMP}/chromium-`);
let ctx;
try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM, headless: true, timeout: 60000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  const bodies = [];
  page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) bodies.push(JSON.parse(r.postData())); });
  await page.goto(srv.base + "/");
  await page.fill("#apikey", KEY);
  await page.dispatchEvent("#apikey", "change");
  await page.evaluate(() => loadModel()); // eslint-disable-line no-undef
  await page.fill("#temperature", "0");
  await page.fill("#top_p", "1");
  await page.fill("#max_tokens", "40");

  await check(`${tag}: chat page: a greedy streamed reply equals the API's answer`, async () => {
    await page.waitForFunction(() => document.getElementById("model").textContent.includes("context"));
    await page.fill("#input", "Tell me about the sun");
    await page.click("#send");
    await page.waitForSelector(".msg.assistant.done", { timeout: 60000 });
    const text = await page.textContent(".msg.assistant.done .text");
    const api = await http(srv.base, "/v1/chat/completions", { key: KEY, body: {
      messages: [{ role: "user", content: "Tell me about the sun" }], temperature: 0, top_p: 1, max_tokens: 40 } });
    assert.equal(text, api.json.choices[0].message.content);
    assert.ok(text.length > 0);
    assert.match(await page.textContent("#stats"), /tokens in/);
    assert.equal(bodies[0].stream, true);
    await page.screenshot({ path: `${TMP}/page.png`, fullPage: true });
  });

  await check(`${tag}: chat page: a long reply streams into the DOM piece by piece; Stop ends it and frees its slot; the next turn sends the history`, async () => {
    await page.fill("#max_tokens", "1900");
    await page.evaluate(() => { // run to the limit (the random model may end early): ignore_eos in the page's requests
      const f = window.fetch;
      window.realFetch = f;
      window.fetch = (u, o) => f(u, o && o.body ? { ...o, body: JSON.stringify({ ...JSON.parse(o.body), ignore_eos: true }) } : o);
    });
    await page.fill("#input", "And the moon?");
    // record every text the reply shows while it streams; after three growing partial texts,
    // press Stop from inside the page (serve.sh gives this test a model slow enough that 1900 tokens take seconds)
    await page.evaluate(() => {
      window.seen = [];
      const obs = new MutationObserver(() => {
        const b = document.querySelectorAll(".msg.assistant .text");
        if (b.length !== 2 || !b[1].textContent || b[1].textContent === window.seen[window.seen.length - 1]) return;
        window.seen.push(b[1].textContent);
        if (window.seen.length === 3) {
          obs.disconnect();
          document.getElementById("stop").click();
        }
      });
      obs.observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
    });
    const gauge = async (name) => Number((await http(srv.base, "/metrics", { method: "GET" })).text.match(new RegExp("^" + name + " (\\d+)", "m"))[1]);
    const gone0 = await gauge("rmu_client_disconnects_total");
    await page.click("#send");
    try {
      await page.waitForFunction(() => document.getElementById("stats").textContent === "stopped", null, { timeout: 10000 });
    } catch (e) {
      throw new Error("no 'stopped': stats say " + JSON.stringify(await page.textContent("#stats")));
    }
    assert.equal(await page.isDisabled("#send"), false);
    const partial = await page.evaluate(() => document.querySelectorAll(".msg.assistant .text")[1].textContent);
    const seen = await page.evaluate(() => window.seen);
    assert.ok(seen.length === 3 && seen.every((t, i) => !i || (t.startsWith(seen[i - 1]) && t.length > seen[i - 1].length)),
              `partial texts: ${JSON.stringify(seen.map((t) => t.length))}`);
    assert.ok(partial.startsWith(seen[2]) && partial.length < 13000, `partial reply of ${partial.length} characters`);
    let active = 1, gone = gone0;
    for (let i = 0; i < 50 && (active || gone === gone0); i++) {
      await sleep(20);
      active = await gauge("rmu_active_slots");
      gone = await gauge("rmu_client_disconnects_total");
    }
    assert.equal(gone, gone0 + 1, "the server did not see the stream cut");
    assert.equal(active, 0, "the stopped reply still holds a slot");
    await page.evaluate(() => { window.fetch = window.realFetch; });
    await page.fill("#max_tokens", "8");
    await page.fill("#input", "Thanks");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".msg.assistant.done").length === 3);
    const last = bodies[bodies.length - 1].messages;
    assert.deepEqual(last.map((m) => m.role), ["user", "assistant", "user", "assistant", "user"]);
    assert.equal(last[0].content, "Tell me about the sun");
    await page.screenshot({ path: `${TMP}/page.png`, fullPage: true });
  });
} catch (e) {
  check(`${tag}: chat page in headless Chromium`, () => { throw e; });
} finally {
  if (ctx) await ctx.close();
  rmSync(profile, { recursive: true, force: true });
  await srv.stop();
}
process.exit(failed() ? 1 : 0);
