/* cmd_serve.c - `rmu serve`: an OpenAI-compatible HTTP server over the engine. The CLI
 * owns the server state; SIGINT/SIGTERM are blocked in every thread and taken here with
 * sigtimedwait, so no handler and no global flag are needed. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fieldmap.h"
#include "model/model.h"
#include "serve/engine.h"
#include "serve/http.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

static const char *SERVE_USAGE =
    "usage: rmu serve -m DIR [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--parallel N] [--ctx 4096]\n"
    "                 [--model-name NAME] [--max-queue N] [--timeout S] [--template auto|zephyr|plain]\n"
    "                 [--prefill-chunk N] [--max-body BYTES] [--idle-timeout S] [--shutdown-grace S]\n"
    "                 [--precision auto|bf16|fp32]\n"
    "OpenAI-compatible API: POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize;\n"
    "GET /v1/models, /health, /metrics, and a chat page at /.\n"
    "  --api-key KEY     clients must send \"Authorization: Bearer KEY\" (default: $RMU_API_KEY, else none)\n"
    "  --parallel N      sequences decoded together, each with its own KV cache of --ctx tokens (4)\n"
    "  --max-queue N     sequences waiting for a slot before new requests get 429 (64)\n"
    "  --timeout S       per-request time limit in seconds, queueing included (600)\n"
    "  --prefill-chunk N prompt tokens fed per step beside the running streams (128)\n"
    "  --max-body BYTES  request body limit, 413 beyond (8388608)\n"
    "  --idle-timeout S  close connections idle this long (60)\n"
    "  --shutdown-grace S  on SIGTERM, let running requests finish this long, then cancel them (10)\n"
    "  --precision P     the matmuls' arithmetic, as rmu generate's (default $RMU_PRECISION, else auto)\n"
    "Port 0 picks a free port; the address is printed on stderr.\n";

typedef struct {
    const char *model, *host, *key, *name, *template_name;
    rmu_prec prec;
    long port, parallel, ctx, max_queue, prefill, idle, max_body;
    double timeout, grace;
    char name_buf[256]; /* the default model name: the folder's */
} serve_args;

static int parse_args(const char *cmd, int argc, char **argv, serve_args *a) {
    *a = (serve_args){.host = "127.0.0.1", .port = 8080, .parallel = 4, .ctx = 4096, .max_queue = 64,
                      .prefill = 128, .idle = 60, .max_body = 8 << 20, .timeout = 600, .grace = 10,
                      .template_name = "auto"};
    const char *prec = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(SERVE_USAGE, stdout);
            return 1;
        }
#define VAL() (v = cli_value(cmd, argc, argv, &i))
#define INT(lo, hi, dst) (VAL() && !cli_int(cmd, f, v, lo, hi, dst))
#define FLT(lo, hi, dst) (VAL() && !cli_float(cmd, f, v, lo, hi, dst))
        int ok;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) ok = (a->model = VAL()) != NULL;
        else if (!strcmp(f, "--host")) ok = (a->host = VAL()) != NULL;
        else if (!strcmp(f, "--api-key")) ok = (a->key = VAL()) != NULL;
        else if (!strcmp(f, "--model-name")) ok = (a->name = VAL()) != NULL;
        else if (!strcmp(f, "--template")) {
            ok = (a->template_name = VAL()) != NULL;
            if (ok && rmu_chat_kind_parse(a->template_name) < 0)
                return cli_fail(cmd, 2, "--template: expected auto, zephyr or plain, got '%s'", a->template_name);
        } else if (!strcmp(f, "--port")) ok = INT(0, 65535, &a->port);
        else if (!strcmp(f, "--parallel")) ok = INT(1, 256, &a->parallel);
        else if (!strcmp(f, "--ctx")) ok = INT(8, 1 << 20, &a->ctx);
        else if (!strcmp(f, "--max-queue")) ok = INT(1, 1 << 20, &a->max_queue);
        else if (!strcmp(f, "--prefill-chunk")) ok = INT(1, 1 << 16, &a->prefill);
        else if (!strcmp(f, "--idle-timeout")) ok = INT(1, 1 << 20, &a->idle);
        else if (!strcmp(f, "--max-body")) ok = INT(1024, 1L << 32, &a->max_body);
        else if (!strcmp(f, "--timeout")) ok = FLT(0.001, 1e9, &a->timeout);
        else if (!strcmp(f, "--shutdown-grace")) ok = FLT(0, 1e6, &a->grace);
        else if (!strcmp(f, "--precision")) ok = (prec = VAL()) != NULL;
        else return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        if (!ok) return 2;
#undef VAL
#undef INT
#undef FLT
    }
    if (!a->model) return cli_fail(cmd, 2, "-m DIR is required");
    if (cli_precision(cmd, prec, &a->prec)) return 2;
    if (!a->key) a->key = getenv("RMU_API_KEY");
    if (a->key && !*a->key) a->key = NULL;
    if (!a->name) {
        const char *b = a->model + strlen(a->model);
        while (b > a->model && b[-1] == '/') b--; /* "dir/" names the model "dir" */
        const char *e = b;
        while (b > a->model && b[-1] != '/') b--;
        snprintf(a->name_buf, sizeof a->name_buf, "%.*s", (int)(e - b), b);
        a->name = *a->name_buf ? a->name_buf : "model";
    }
    for (const char *p = a->name; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return cli_fail(cmd, 2, "--model-name: use printable ASCII");
    return 0;
}

static int is_loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") || !strcmp(host, "localhost") ||
           !strncmp(host, "127.", 4);
}

/* The model is loaded (its weight panels made with OpenMP) on a thread that then exits, and
 * libgomp frees that thread's workers: the engine's team is then the only one. With a second,
 * idle team libgomp counts more threads than cores and stops spin-waiting between parallel
 * regions (16 streams of the 4-layer model: ~10% slower; with OMP_WAIT_POLICY=active the idle
 * team's spinning cost 35%). */
typedef struct {
    rmu_model *m;
    const char *dir;
    rmu_err *e;
    int rc;
} load_job;
static void *load_main(void *arg) {
    load_job *j = arg;
    j->rc = rmu_model_load(j->m, j->dir, j->e);
    return NULL;
}
static int load_model(rmu_model *m, const char *dir, rmu_err *e) {
    load_job j = {m, dir, e, -1};
    pthread_t th;
    if (pthread_create(&th, NULL, load_main, &j)) return rmu_errf(e, "%s: cannot start a thread to load it", dir);
    pthread_join(th, NULL);
    return j.rc;
}

/* Waits for SIGINT/SIGTERM for up to ms milliseconds: 1 when one came. */
static int got_signal(const sigset_t *set, long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    return sigtimedwait(set, NULL, &ts) > 0;
}

int rmu_cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    serve_args a;
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    if (!is_loopback(a.host) && !a.key)
        fprintf(stderr, "rmu serve: warning: listening on %s without an API key (--api-key or RMU_API_KEY): "
                        "anyone who can reach this address can use the model\n", a.host);
    /* Blocked before any thread starts, so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rmu_err e;
    rmu_srv srv;
    rmu_http_opts ho = {.host = a.host, .port = (int)a.port, .api_key = a.key, .max_body = (size_t)a.max_body,
                        .idle_timeout_s = (int)a.idle, .max_connections = (int)(2 * a.parallel + a.max_queue + 64)};
    if (rmu_http_start(&srv, &ho, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    int port = rmu_http_port(&srv);
    int v6 = strchr(a.host, ':') != NULL;
    fprintf(stderr, "rmu serve: listening on http://%s%s%s:%d/ (loading %s)\n", v6 ? "[" : "", a.host, v6 ? "]" : "",
            port, a.model);
    fflush(stderr);

    rmu_model model;
    rmu_tokenizer *tok = NULL;
    rmu_eng *eng = NULL;
    int loaded = 0;
    rc = 1;
    if (load_model(&model, a.model, &e)) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    loaded = 1;
    rmu_model_set_precision(&model, a.prec);
    if (!(tok = rmu_tok_load(a.model, &e))) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    if (rmu_tok_vocab_size(tok) > model.cfg.vocab_size) {
        cli_fail(cmd, 1, "%s: tokenizer has %d pieces but config.json vocab_size is %d", a.model,
                 rmu_tok_vocab_size(tok), model.cfg.vocab_size);
        goto out;
    }
    rmu_eng_opts eo = {.parallel = (int)a.parallel, .ctx = (int)a.ctx, .max_queue = (int)a.max_queue,
                       .prefill_chunk = (int)a.prefill, .timeout_s = a.timeout};
    if (!(eng = rmu_eng_create(&model, tok, &eo, &e))) {
        static const cli_field fields[] = {{"parallel", "--parallel"}, {"ctx", "--ctx"},
                                           {"prefill_chunk", "--prefill-chunk"}, {"max_queue", "--max-queue"},
                                           {NULL, NULL}};
        cli_field_flags(&e, fields);
        rc = cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    rmu_http_model hm = {.eng = eng, .tok = tok, .tmpl = rmu_chat_kind_parse(a.template_name), .name = a.name,
                         .ctx = (int)a.ctx, .vocab = model.cfg.vocab_size};
    rmu_http_ready(&srv, &hm);
    double kv = 2.0 * a.parallel * model.cfg.n_layers * a.ctx * model.cfg.n_kv_heads * model.cfg.head_dim * 4;
    fprintf(stderr, "rmu serve: ready: model '%s', %ld slots x %ld tokens (KV cache %.0f MiB)%s\n", a.name,
            a.parallel, a.ctx, kv / (1 << 20), a.key ? ", API key required" : "");
    fflush(stderr);
    while (!got_signal(&sigs, 1000)) {
    }
    rc = 0;
out:
    fprintf(stderr, "rmu serve: shutting down\n");
    rmu_http_quiesce(&srv);
    if (eng) rmu_eng_drain(eng, a.grace);
    rmu_http_stop(&srv, 5); /* streams send their last events; a client that stopped reading is cut */
    rmu_eng_destroy(eng);
    rmu_tok_free(tok);
    if (loaded) rmu_model_free(&model);
    return rc;
}
