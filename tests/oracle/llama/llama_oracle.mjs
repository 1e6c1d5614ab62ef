// llama_oracle.mjs - llama.cpp itself (npm node-llama-cpp 3.21.1: its prebuilt CPU library,
// offline, build: 'never') as the oracle for `rmu export --gguf`: it loads the GGUF rmu wrote
// and tokenizes, decodes greedily and scores continuations; its own GGUF parser
// (readGgufFileInfo) reads the metadata and tensor table. tests/integration/export.sh
// compares the outputs with rmu's.
//
//   node llama_oracle.mjs meta GGUF                  JSON: {metadata, tensors: [{name, dims,
//                                                    type, offset}]} (arrays summarised)
//   node llama_oracle.mjs tokenize GGUF FILE         ids per NUL-separated item of FILE, as
//                                                    `rmu tokenize -0` prints them (BOS when
//                                                    the GGUF says add_bos_token; special
//                                                    tokens parsed, as HF does)
//   node llama_oracle.mjs greedy GGUF N "IDS"        greedy continuation (temperature 0) of
//                                                    up to N ids after IDS, stopping at EOS
//   node llama_oracle.mjs loglik GGUF REQ.json OUT.json
//                                                    REQ: rmu eval --dump-requests entries
//                                                    ({context_ids, continuation_ids});
//                                                    OUT: [{loglik, greedy}] per entry,
//                                                    log-softmax sums as lm-eval computes
import fs from 'node:fs';
import {getLlama, readGgufFileInfo, LlamaLogLevel} from 'node-llama-cpp';

const [cmd, gguf, a1, a2] = process.argv.slice(2);

// Arrays (the vocab) are summarised: length, first and last items, and for numbers a
// histogram when they take few values (token types).
function summarise(v) {
    if (Array.isArray(v)) {
        const s = {length: v.length, first: v.slice(0, 3), last: v.slice(-3)};
        if (v.every(x => typeof x === 'number')) {
            const h = {};
            for (const x of v) h[x] = (h[x] ?? 0) + 1;
            if (Object.keys(h).length <= 16) s.hist = h;
        }
        return s;
    }
    if (typeof v === 'bigint') return Number(v);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, summarise(x)]));
    return v;
}

async function loadModel() {
    const llama = await getLlama({gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false});
    const model = await llama.loadModel({modelPath: gguf, gpuLayers: 0});
    return {llama, model};
}

async function newSequence(model, size) {
    // an fp32 KV cache (llama.cpp defaults to f16): the comparison is then about the weights
    const ctx = await model.createContext({contextSize: size, threads: 1, batchSize: size, sequences: 1,
        flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32'});
    return {ctx, seq: ctx.getSequence()};
}

if (cmd === 'meta') {
    const info = await readGgufFileInfo(gguf, {readTensorInfo: true});
    const out = {
        version: info.version,
        metadata: summarise(info.metadata),
        tensors: info.fullTensorInfo.map(t => ({name: t.name, dims: t.dimensions.map(Number), type: t.ggmlType,
            offset: Number(t.offset)})),
    };
    process.stdout.write(JSON.stringify(out) + '\n');
} else if (cmd === 'tokenize') {
    const {model} = await loadModel();
    const items = fs.readFileSync(a1, 'utf8').split('\0');
    if (items.length && items[items.length - 1] === '') items.pop();
    const lines = items.map(t => {
        const ids = Array.from(model.tokenize(t, true));
        if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) ids.unshift(model.tokens.bos);
        if (model.tokens.shouldAppendEosToken && model.tokens.eos != null) ids.push(model.tokens.eos);
        return ids.join(' ');
    });
    process.stdout.write(lines.map(l => l + '\n').join(''));
} else if (cmd === 'greedy') {
    const {model} = await loadModel();
    const n = Number(a1), prompt = a2.trim().split(/[\s,]+/).map(Number);
    const {seq} = await newSequence(model, prompt.length + n + 8);
    const out = [];
    if (n > 0)
        for await (const t of seq.evaluate(prompt, {temperature: 0})) {
            if (t === model.tokens.eos) break;
            out.push(t);
            if (out.length >= n) break;
        }
    process.stdout.write(out.join(' ') + '\n');
} else if (cmd === 'loglik') {
    const {model} = await loadModel();
    const reqs = JSON.parse(fs.readFileSync(a1, 'utf8'));
    const longest = Math.max(...reqs.map(r => r.context_ids.length + r.continuation_ids.length));
    const {seq} = await newSequence(model, longest + 8);
    const res = [];
    let cur = []; // the tokens in the sequence: a context shared with the last request stays
    for (const r of reqs) {
        const ctx = r.context_ids, cont = r.continuation_ids, all = [...ctx, ...cont];
        // the distribution after each of the last len(cont) inputs scores the next token, so
        // evaluation restarts at the last context token at the latest
        let keep = 0;
        while (keep < Math.min(cur.length, ctx.length - 1) && cur[keep] === all[keep]) keep++;
        if (keep < cur.length) await seq.eraseContextTokenRanges([{start: keep, end: cur.length}]);
        const input = all.slice(keep, -1).map((t, i) => keep + i >= ctx.length - 1
            ? [t, {generateNext: {probabilities: true, options: {temperature: 0}}}] : t);
        const outs = await seq.controlledEvaluate(input);
        cur = all.slice(0, -1);
        let ll = 0, greedy = true;
        for (let k = 0; k < cont.length; k++) {
            const probs = outs[ctx.length - 1 - keep + k].next.probabilities;
            ll += Math.log(probs.get(cont[k]) ?? 0);
            if (probs.entries().next().value[0] !== cont[k]) greedy = false;
        }
        res.push({loglik: ll, greedy});
    }
    fs.writeFileSync(a2, JSON.stringify(res) + '\n');
} else {
    process.stderr.write('usage: node llama_oracle.mjs meta|tokenize|greedy|loglik GGUF ...\n');
    process.exit(2);
}
process.exit(0);
