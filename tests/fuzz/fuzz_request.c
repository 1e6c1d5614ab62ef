/* fuzz_request.c - libFuzzer entry for the request side of `rmu serve`: body bytes ->
 * rmu_api_parse -> rmu_api_encode (chat template rendering with a Jinja template, BPE
 * encoding, context checks) -> engine parameters, and the response JSON built from made-up
 * outputs of such a request. The first byte picks the endpoint and the template kind; the
 * rest is the body. Failures must come with an OpenAI-shaped error (4xx, a message, a
 * type); successes must satisfy what the engine relies on. `make fuzz`, then
 * build-fuzz/fuzz_request [corpus dir]. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/api.h"

#define CTX 96

static const char TEMPLATE[] =
    "{% for m in messages %}{% if m['role'] == 'system' %}<|system|>\\n{{ m['content'] }}</s>\\n"
    "{% elif m['role'] == 'user' %}<|user|>\\n{{ m['content'] | trim }}</s>\\n{% else %}<|assistant|>\\n"
    "{{ m['content'] }}</s>\\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>\\n{% endif %}";

/* A small Llama-style tokenizer (byte fallback, a few merges) with a chat template, made
 * once in a temporary folder. */
static rmu_tokenizer *tokenizer(void) {
    static rmu_tokenizer *t;
    if (t) return t;
    char dir[] = "/tmp/fuzz_request_XXXXXX", path[64];
    if (!mkdtemp(dir)) abort();
    json_t *vocab = json_object(), *added = json_array();
    const char *special[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) {
        json_object_set_new(vocab, special[i], json_integer(i));
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content", special[i],
                                               "special", 1, "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0));
    }
    for (int i = 0; i < 256; i++) {
        char p[8];
        snprintf(p, sizeof p, "<0x%02X>", i);
        json_object_set_new(vocab, p, json_integer(3 + i));
    }
    const char *pieces[] = {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "<", "|", ">", "u", "s", "e", "r"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        json_object_set_new(vocab, pieces[i], json_integer(259 + (int)i));
    json_t *tok = json_pack(
        "{s:s, s:o, s:{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}, s:n, s:{s:s, s:s, s:b, s:b, s:o, s:[s, s, s]}}",
        "version", "1.0", "added_tokens", added, "normalizer", "type", "Sequence", "normalizers", "type", "Prepend",
        "prepend", "\xe2\x96\x81", "type", "Replace", "pattern", "String", " ", "content", "\xe2\x96\x81",
        "pre_tokenizer", "model", "type", "BPE", "unk_token", "<unk>", "fuse_unk", 1, "byte_fallback", 1, "vocab",
        vocab, "merges", "\xe2\x96\x81 a", "a b", "\xe2\x96\x81" "a b");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!tok || json_dump_file(tok, path, 0)) abort();
    json_decref(tok);
    char cfg[2048];
    snprintf(cfg, sizeof cfg, "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"chat_template\": \"%s\"}", TEMPLATE);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(cfg, f);
    fclose(f);
    rmu_err e;
    if (!(t = rmu_tok_load(dir, &e))) {
        fprintf(stderr, "fuzz_request: %s\n", e.msg);
        abort();
    }
    return t;
}

static void check_err(const rmu_api_err *err) {
    if (err->status < 400 || err->status > 500 || !err->type || !err->message[0]) abort();
    json_t *j = rmu_api_error_json(err);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!s) abort(); /* the error must always be expressible as JSON */
    free(s);
    json_decref(j);
}

/* Made-up outputs of the request's sequences, and the response JSON built from them. */
static void responses(const rmu_api_req *r, const rmu_tokenizer *t) {
    int nseq = r->nprompts * r->n;
    rmu_eng_seq_out *o = calloc(nseq, sizeof *o);
    const rmu_eng_seq_out **po = calloc(nseq, sizeof *po);
    rmu_eng_lp lp = {.id = 300, .lp = -0.5f, .ntop = 2, .top_id = {300, 2}, .top_lp = {-0.5f, -1.5f}};
    for (int k = 0; k < nseq; k++) {
        const rmu_api_prompt *p = &r->prompts[k / r->n];
        o[k].prompt = p->ids;
        o[k].n_prompt = p->n;
        o[k].ids = &lp.id;
        o[k].nids = 1;
        o[k].lps = &lp;
        o[k].nlps = r->logprobs;
        o[k].finish = k % 2 ? RMU_FINISH_STOP : RMU_FINISH_LENGTH;
        rmu_sb_puts(&o[k].text, "ab\xe2\x96\x81");
        po[k] = &o[k];
    }
    rmu_api_resp c = {r, t, "cmpl-fuzz", "m", 0};
    json_t *js[3] = {rmu_api_response(&c, po), rmu_api_chunk(&c, 0, 1, "a", 1, &lp, r->logprobs, &o[0], 0),
                     rmu_api_usage_chunk(&c, po)};
    for (int i = 0; i < 3; i++) {
        char *s = js[i] ? json_dumps(js[i], JSON_COMPACT) : NULL;
        if (!s) abort();
        free(s);
        json_decref(js[i]);
    }
    for (int k = 0; k < nseq; k++) rmu_sb_free(&o[k].text);
    free(o);
    free(po);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    rmu_tokenizer *t = tokenizer();
    rmu_api_kind kind = (rmu_api_kind)(data[0] % 4);
    rmu_chat_kind tmpl = (rmu_chat_kind)((data[0] >> 2) % 3);
    int vocab = rmu_tok_vocab_size(t) + (data[0] >> 4) % 3; /* a model vocab may be larger */
    rmu_api_req r;
    rmu_api_err err;
    if (rmu_api_parse(&r, kind, (const char *)data + 1, size - 1, &err)) {
        check_err(&err);
    } else if (rmu_api_encode(&r, t, tmpl, vocab, CTX, &err)) {
        check_err(&err);
    } else if (kind == RMU_API_CHAT || kind == RMU_API_COMPLETIONS) {
        if (r.nprompts < 1 || r.n < 1 || r.n > RMU_API_MAX_N || r.nstops > RMU_API_MAX_STOPS) abort();
        for (int i = 0; i < r.nprompts; i++)
            for (int j = 0; j < r.n; j++) {
                rmu_eng_params p;
                rmu_api_seq_params(&r, i, j, 42, &p);
                if (p.n_prompt < 1 || p.max_new < 0 || p.n_prompt + p.max_new > CTX) abort();
                if (p.top < 0 || p.top > RMU_ENG_MAX_TOP || !(p.smp.temp >= 0 && p.smp.temp <= 2)) abort();
                if (!(p.smp.top_p > 0 && p.smp.top_p <= 1) || p.smp.top_k < 0) abort();
                for (int k = 0; k < p.n_prompt; k++)
                    if (p.prompt[k] < 0 || p.prompt[k] >= rmu_tok_vocab_size(t)) abort();
                for (int k = 0; k < p.nstops; k++)
                    if (!p.stops[k] || !p.stops[k][0]) abort();
            }
        responses(&r, t);
    } else if (r.nprompts != 1 || r.prompts[0].n < 0) {
        abort();
    }
    rmu_api_req_free(&r);
    return 0;
}
