/* climem.c - memory check before a command maps its model (see climem.h). Each command's
 * run is described by the flags it reads (the same defaults as the command): the context of
 * its KV cache, its batch, and for training runs the trainable tensors and sequence length. */
#include "climem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/config.h"
#include "model/memest.h"
#include "train/glob.h"

/* The value of the last occurrence of flag (or its alias) in argv, or NULL. */
static const char *flag(int argc, char **argv, const char *f, const char *alias) {
    const char *v = NULL;
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], f) || (alias && !strcmp(argv[i], alias))) v = argv[i + 1];
    return v;
}

static long num(int argc, char **argv, const char *f, long def) {
    const char *v = flag(argc, argv, f, NULL);
    char *end;
    long x = v ? strtol(v, &end, 10) : def;
    return v && (*end && *end != ',') ? def : x > 0 ? x : def;
}

/* The largest of a comma-separated list of integers ("512,768"), or def. */
static long num_max(int argc, char **argv, const char *f, long def) {
    const char *v = flag(argc, argv, f, NULL);
    if (!v) return def;
    long best = 0;
    for (const char *p = v; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p) return def;
        if (x > best) best = x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return def;
    }
    return best > 0 ? best : def;
}

static int glob_match(void *ud, const char *name) { return rmu_glob_match(ud, name); }
static int match_all(void *ud, const char *name) { return 1; }

/* "3.21 GiB" or "12.3 MiB" into b[24]. */
static const char *size(char *b, uint64_t n) {
    if (n >= (1ull << 30)) snprintf(b, 24, "%.2f GiB", n / 1073741824.0);
    else snprintf(b, 24, "%.1f MiB", n / 1048576.0);
    return b;
}

typedef struct {
    uint64_t total, weights, kv, scratch, train;
} sum;

/* Adds the estimate of a run on dir; 0, or -1 when the folder cannot be read (the command
 * itself reports that, with its own context). */
static int add(sum *s, const char *dir, rmu_mem_opts *o, const char *trainable) {
    rmu_err e;
    rmu_glob g = {0};
    if (trainable && rmu_glob_compile(&g, trainable, &e)) return -1;
    if (trainable) o->match = glob_match, o->ud = &g;
    rmu_mem_need n;
    int rc = rmu_mem_estimate(dir, o, &n, &e);
    if (trainable) rmu_glob_free(&g);
    if (rc) return -1;
    s->total += n.total, s->weights += n.weights, s->kv += n.kv, s->scratch += n.scratch, s->train += n.train;
    return 0;
}

/* Context positions capped by the model's max_position_embeddings (when it has one). */
static int cap_ctx(const char *dir, long want) {
    rmu_config c;
    rmu_err e;
    if (want > 1 << 24) want = 1 << 24;
    if (rmu_cfg_load(&c, dir, &e) == 0 && c.max_position_embeddings > 0 && want > c.max_position_embeddings)
        return c.max_position_embeddings;
    return (int)want;
}

/* The run of argv's command; 0 when it maps no model or cannot be described. */
static int describe(int argc, char **argv, sum *s) {
    const char *cmd = argv[1], *m = flag(argc, argv, "-m", "--model");
    rmu_mem_opts o = {0};
    if (!m) return 0;
    if (!strcmp(cmd, "generate") || !strcmp(cmd, "chat")) {
        o.ctx = cap_ctx(m, num(argc, argv, "--ctx", 4096));
        o.batch = o.ctx < 512 ? o.ctx : 512;
        return add(s, m, &o, NULL);
    }
    if (!strcmp(cmd, "eval")) { /* the KV cache grows to the longest request: ~2048 for MMLU */
        o.ctx = cap_ctx(m, num(argc, argv, "--max-length", 2048) < 2048 ? num(argc, argv, "--max-length", 2048) : 2048);
        o.batch = o.ctx < 512 ? o.ctx : 512;
        return add(s, m, &o, NULL);
    }
    if (!strcmp(cmd, "mtbench")) { /* answers; judge and show map no model */
        o.ctx = cap_ctx(m, num(argc, argv, "--ctx", 4096));
        o.batch = o.ctx < 512 ? o.ctx : 512;
        return add(s, m, &o, NULL);
    }
    if (!strcmp(cmd, "bench")) {
        long p = num(argc, argv, "--prompt-len", 512);
        o.ctx = cap_ctx(m, p + num(argc, argv, "--gen-len", 128) + 1);
        o.batch = (int)(p < o.ctx ? p : o.ctx);
        return add(s, m, &o, NULL);
    }
    if (!strcmp(cmd, "train")) {
        o.batch = (int)num(argc, argv, "--batch-size", 8);
        o.seq = cap_ctx(m, num(argc, argv, "--seq-len", 512));
        const char *t = flag(argc, argv, "--trainable", NULL);
        if (!t) o.match = match_all;
        return add(s, m, &o, t);
    }
    if (!strcmp(cmd, "unlearn")) {
        o.batch = (int)num(argc, argv, "--batch-size", 4);
        long len = num_max(argc, argv, "--max-len", 768), rl = num(argc, argv, "--retain-max-len", 512);
        o.seq = cap_ctx(m, len > rl ? len : rl);
        const char *t = flag(argc, argv, "--params", NULL);
        char pat[512];
        if (!t) {
            const char *ids = flag(argc, argv, "--layer-ids", NULL);
            snprintf(pat, sizeof pat, "model.layers.{%s}.mlp.down_proj.weight", ids && strlen(ids) < 400 ? ids : "5,6,7");
            if (!strchr(pat, ',')) snprintf(pat, sizeof pat, "model.layers.%s.mlp.down_proj.weight", ids);
            t = pat;
        }
        return add(s, m, &o, t);
    }
    if (!strcmp(cmd, "attack") && argc > 2 && !strcmp(argv[2], "relearn")) {
        o.batch = (int)num(argc, argv, "--batch-size", 1);
        o.seq = cap_ctx(m, num(argc, argv, "--seq-len", 1024));
        const char *t = flag(argc, argv, "--trainable", NULL);
        if (!t) o.match = match_all;
        return add(s, m, &o, t);
    }
    if (!strcmp(cmd, "attack") && argc > 2 && !strcmp(argv[2], "ablate")) { /* both models, one at a time */
        o.ctx = cap_ctx(m, num(argc, argv, "--max-len", 512));
        o.batch = o.ctx < 512 ? o.ctx : 512;
        const char *b = flag(argc, argv, "--base", NULL);
        rmu_mem_opts ob = o;
        return add(s, m, &o, NULL) || (b && add(s, b, &ob, NULL)) ? -1 : 0;
    }
    return 0;
}

int cli_mem_precheck(int *argc, char **argv) {
    int strict = 0, n = 0;
    for (int i = 0; i < *argc; i++) {
        if (i >= 2 && !strcmp(argv[i], "--strict-memory")) strict = 1;
        else argv[n++] = argv[i];
    }
    argv[n] = NULL;
    *argc = n;
    if (n < 2) return 0;
    for (int i = 2; i < n; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 0;
    sum s = {0};
    if (describe(n, argv, &s) || !s.total) return 0;
    uint64_t avail = rmu_mem_available();
    if (!avail || s.total <= avail) return 0;
    char what[384], b[6][24];
    snprintf(what, sizeof what, "this run needs about %s (weights %s + KV cache %s + scratch %s + training state %s) "
             "and %s is available (MemAvailable)", size(b[0], s.total), size(b[1], s.weights), size(b[2], s.kv),
             size(b[3], s.scratch), size(b[4], s.train), size(b[5], avail));
    if (strict) return cli_fail(argv[1], 1, "%s; refusing under --strict-memory", what);
    fprintf(stderr, "rmu %s: warning: %s; it may swap and slow the machine to a halt (--strict-memory makes this an "
                    "error)\n", argv[1], what);
    return 0;
}
