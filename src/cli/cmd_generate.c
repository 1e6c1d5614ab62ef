/* cmd_generate.c - `rmu generate` and `rmu chat`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fieldmap.h"
#include "model/generate.h"
#include "model/check.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model, *prompt, *system, *template_name;
    int n, ctx, chat, bos;
    rmu_prec prec;
    rmu_sampler_cfg scfg;
    const char *stops[16];
    int nstops;
} gen_args;

static const char *GEN_USAGE =
    "usage: rmu generate -m DIR -p TEXT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
    "                    [--stop STRING]... [--ctx N] [--chat] [--template auto|zephyr|plain] [--no-bos]\n"
    "                    [--precision auto|bf16|fp32]\n"
    "       rmu chat -m DIR [--system TEXT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S] [--ctx N]\n"
    "                [--template auto|zephyr|plain] [--precision auto|bf16|fp32]\n";

static int parse_gen_args(const char *cmd, int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->n = 256;
    a->ctx = 4096;
    a->bos = 1;
    a->template_name = "auto";
    a->scfg = (rmu_sampler_cfg){.temp = 0.8f, .top_k = 0, .top_p = 0.95f, .seed = 0};
    int have_seed = 0;
    const char *prec = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        long l;
        double d;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(GEN_USAGE, stdout);
            return 1;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (!(a->model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) {
            if (!(a->prompt = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--system")) {
            if (!(a->system = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--template")) {
            if (!(a->template_name = cli_value(cmd, argc, argv, &i))) return 2;
            if (rmu_chat_kind_parse(a->template_name) < 0)
                return cli_fail(cmd, 2, "--template: expected auto, zephyr or plain, got '%s'", a->template_name);
        } else if (!strcmp(f, "-n") || !strcmp(f, "--max-new-tokens")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 24, &l)) return 2;
            a->n = (int)l;
        } else if (!strcmp(f, "--ctx")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 8, 1 << 20, &l)) return 2;
            a->ctx = (int)l;
        } else if (!strcmp(f, "--temp")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, f, v, 0, 100, &d)) return 2;
            a->scfg.temp = (float)d;
        } else if (!strcmp(f, "--top-k")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 24, &l)) return 2;
            a->scfg.top_k = (int)l;
        } else if (!strcmp(f, "--top-p")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, f, v, 1e-6, 1, &d)) return 2;
            a->scfg.top_p = (float)d;
        } else if (!strcmp(f, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 0x7fffffffffffffffL, &l)) return 2;
            a->scfg.seed = (uint64_t)l;
            have_seed = 1;
        } else if (!strcmp(f, "--stop")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (a->nstops == 16) return cli_fail(cmd, 2, "--stop: at most 16 stop strings");
            if (!*v) return cli_fail(cmd, 2, "--stop: empty stop string");
            a->stops[a->nstops++] = v;
        } else if (!strcmp(f, "--chat")) {
            a->chat = 1;
        } else if (!strcmp(f, "--no-bos")) {
            a->bos = 0;
        } else if (!strcmp(f, "--precision")) {
            if (!(prec = cli_value(cmd, argc, argv, &i))) return 2;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    if (cli_precision(cmd, prec, &a->prec)) return 2;
    if (!have_seed) a->scfg.seed = (uint64_t)getpid() ^ 0x5eedull; /* fresh text each run unless --seed */
    if (!a->model) return cli_fail(cmd, 2, "-m DIR is required");
    return 0;
}

typedef struct {
    rmu_model model;
    rmu_tokenizer *tok;
    rmu_state state;
    rmu_sampler smp;
} session;

static int session_open(const char *cmd, session *s, const gen_args *a) {
    rmu_err e;
    memset(s, 0, sizeof *s);
    if (rmu_model_load(&s->model, a->model, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    cli_model_note(cmd, &s->model.cfg);
    rmu_model_set_precision(&s->model, a->prec);
    if (!(s->tok = rmu_tok_load(a->model, &e))) {
        rmu_model_free(&s->model);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    if (rmu_check_tokenizer(&s->model, s->tok, &e)) {
        int r = cli_fail(cmd, 1, "%s", e.msg);
        rmu_tok_free(s->tok);
        rmu_model_free(&s->model);
        return r;
    }
    if (rmu_state_init(&s->state, &s->model, a->ctx, 512, &e) ||
        rmu_sampler_init(&s->smp, s->model.cfg.vocab_size, &a->scfg, &e)) {
        rmu_state_free(&s->state);
        rmu_tok_free(s->tok);
        rmu_model_free(&s->model);
        static const cli_field fields[] = {{"temp", "--temp"}, {"top_k", "--top-k"}, {"top_p", "--top-p"}, {NULL, NULL}};
        cli_field_flags(&e, fields);
        return cli_fail(cmd, 2, "%s", e.msg);
    }
    return 0;
}

static void session_close(session *s) {
    rmu_sampler_free(&s->smp);
    rmu_state_free(&s->state);
    rmu_tok_free(s->tok);
    rmu_model_free(&s->model);
}

static int print_cb(void *ud, const char *text) {
    (void)ud;
    fputs(text, stdout);
    fflush(stdout);
    return 0;
}

int rmu_cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    gen_args a;
    int rc = parse_gen_args(cmd, argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if (!a.prompt) return cli_fail(cmd, 2, "-p TEXT is required");
    session s;
    if ((rc = session_open(cmd, &s, &a))) return rc;
    rmu_err e;
    int *ids = NULL, n = 0;
    char *rendered = NULL;
    if (a.chat) {
        rmu_chat_msg msgs[2];
        int nm = 0;
        if (a.system) msgs[nm++] = (rmu_chat_msg){"system", a.system};
        msgs[nm++] = (rmu_chat_msg){"user", a.prompt};
        rendered = rmu_chat_render(s.tok, rmu_chat_kind_parse(a.template_name), msgs, nm, 1, &e);
        if (!rendered || rmu_chat_encode(s.tok, rendered, &ids, &n, &e)) {
            rc = cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
    } else if (rmu_tok_encode(s.tok, a.prompt, strlen(a.prompt), a.bos && rmu_tok_add_bos(s.tok), &ids, &n, &e)) {
        rc = cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    if (n == 0) {
        rc = cli_fail(cmd, 2, "-p: the prompt encodes to no tokens (empty prompt with --no-bos)");
        goto out;
    }
    if (n >= a.ctx) {
        rc = cli_fail(cmd, 2, "-p: prompt of %d tokens does not fit the context of %d tokens (use --ctx)", n, a.ctx);
        goto out;
    }
    if (!a.chat) { /* echo the prompt as llama2.c does: its decoded pieces */
        rmu_tok_stream st;
        rmu_tok_stream_init(&st, s.tok);
        char piece[256];
        for (int i = 0; i < n; i++) {
            rmu_tok_stream_push(&st, ids[i], piece, sizeof piece);
            fputs(piece, stdout);
        }
        rmu_tok_stream_flush(&st, piece, sizeof piece);
        fputs(piece, stdout);
        fflush(stdout);
    }
    rmu_gen_opts o = {.max_new = a.n, .stops = a.stops, .nstops = a.nstops, .cb = print_cb, .continuation = !a.chat};
    rmu_gen_result r;
    if (rmu_gen_run(&s.model, s.tok, &s.state, &s.smp, ids, n, &o, &r, &e)) {
        rc = cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    fputc('\n', stdout);
    fprintf(stderr, "rmu generate: %d prompt tokens, %d new tokens (%s)\n", n, r.n,
            r.stop_reason == 1 ? "eos" : r.stop_reason == 2 ? "stop string" : "length");
    rmu_gen_result_free(&r);
out:
    free(ids);
    free(rendered);
    session_close(&s);
    return rc;
}

/* ---- chat: multi-turn; the cache keeps the longest common prefix of the re-rendered
 * conversation, so each turn only feeds its new tokens. */

typedef struct {
    rmu_chat_msg *m;
    char **owned;
    int n, cap;
} convo;

static int convo_add(convo *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 8;
        rmu_chat_msg *m = realloc(c->m, sizeof *m * cap);
        if (!m) return -1;
        c->m = m;
        char **o = realloc(c->owned, sizeof *o * cap);
        if (!o) return -1;
        c->owned = o;
        c->cap = cap;
    }
    char *dup = strdup(content);
    if (!dup) return -1;
    c->owned[c->n] = dup;
    c->m[c->n++] = (rmu_chat_msg){role, dup};
    return 0;
}

static void convo_free(convo *c) {
    for (int i = 0; i < c->n; i++) free(c->owned[i]);
    free(c->m);
    free(c->owned);
}

int rmu_cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    gen_args a;
    int rc = parse_gen_args(cmd, argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if (argc > 1 && a.prompt) return cli_fail(cmd, 2, "-p is for rmu generate; chat reads turns from stdin");
    session s;
    if ((rc = session_open(cmd, &s, &a))) return rc;
    rmu_chat_kind kind = rmu_chat_kind_parse(a.template_name);
    convo c = {0};
    int *cached = malloc(sizeof(int) * a.ctx), ncached = 0;
    char *line = NULL;
    size_t cap = 0;
    int interactive = isatty(0);
    rmu_err e;
    if (!cached || (a.system && convo_add(&c, "system", a.system))) {
        rc = cli_fail(cmd, 1, "out of memory");
        goto out;
    }
    for (;;) {
        if (interactive) fputs("> ", stderr);
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (convo_add(&c, "user", line)) { rc = cli_fail(cmd, 1, "out of memory"); break; }
        char *prompt = rmu_chat_render(s.tok, kind, c.m, c.n, 1, &e);
        int *ids = NULL, n = 0;
        if (!prompt || rmu_chat_encode(s.tok, prompt, &ids, &n, &e)) {
            free(prompt);
            rc = cli_fail(cmd, 1, "%s", e.msg);
            break;
        }
        free(prompt);
        int common = 0;
        while (common < ncached && common < n - 1 && cached[common] == ids[common]) common++;
        if (n >= a.ctx) {
            free(ids);
            rc = cli_fail(cmd, 1, "conversation of %d tokens no longer fits the context of %d (use --ctx)", n, a.ctx);
            break;
        }
        s.state.pos = common; /* positions past it are overwritten */
        rmu_gen_opts o = {.max_new = a.n, .stops = a.stops, .nstops = a.nstops, .cb = print_cb};
        rmu_gen_result r;
        if (rmu_gen_run(&s.model, s.tok, &s.state, &s.smp, ids + common, n - common, &o, &r, &e)) {
            free(ids);
            rc = cli_fail(cmd, 1, "%s", e.msg);
            break;
        }
        fputc('\n', stdout);
        fflush(stdout);
        memcpy(cached, ids, sizeof(int) * n);
        ncached = n;
        for (int i = 0; i < r.n && ncached < s.state.pos; i++) cached[ncached++] = r.ids[i];
        free(ids);
        if (convo_add(&c, "assistant", r.text)) { rmu_gen_result_free(&r); rc = cli_fail(cmd, 1, "out of memory"); break; }
        rmu_gen_result_free(&r);
    }
out:
    free(line);
    free(cached);
    convo_free(&c);
    session_close(&s);
    return rc;
}
