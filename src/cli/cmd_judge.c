/* cmd_judge.c - `rmu mtbench judge` (FastChat gen_judgment.py --mode single against any
 * OpenAI-compatible judge) and `rmu mtbench show` (show_result.py). Rules: src/eval/judge.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/util.h"
#include "eval/judge.h"
#include "eval/mtbench.h"
#include "io/openai.h"

static const char *JUDGE_USAGE =
    "usage: rmu mtbench judge --questions question.jsonl --answers DIR|FILE[,FILE...]\n"
    "                         --judge-prompts judge_prompts.jsonl --reference reference_answer/gpt-4.jsonl\n"
    "                         --out model_judgment/NAME_single.jsonl --judge-url URL --judge-model NAME\n"
    "                         [--api-key-env VAR] [--parallel N] [--model-list M1,M2] [--first-n N]\n"
    "                         [--max-retries N] [--timeout S]\n"
    "\n"
    "  FastChat's single-answer grading: turn 1 with single-v1 (single-math-v1 and the reference\n"
    "  answer for math, reasoning and coding), turn 2 with the multi-turn prompts; the judge is\n"
    "  asked at temperature 0, max_tokens 2048; the rating is [[x]] (else [x], else -1).\n"
    "  --answers: a folder of MODEL.jsonl answer files (as FastChat's model_answer/) or files;\n"
    "  the model name is the file name without .jsonl. --judge-url is the server's base URL\n"
    "  (e.g. https://api.openai.com/v1, or http://127.0.0.1:8080/v1 for rmu serve); the key is\n"
    "  read from the environment variable --api-key-env (default OPENAI_API_KEY) when set.\n"
    "  --out gets one line per judgment, appended as each finishes: a rerun skips what is\n"
    "  judged and retries the rest. 429/5xx/timeouts are retried with backoff; a bad key or URL\n"
    "  stops the run.\n";

static const char *SHOW_USAGE =
    "usage: rmu mtbench show --judgments FILE [--model NAME] [--questions question.jsonl] [--output FILE.json]\n"
    "\n"
    "  show_result.py --mode single: drops ratings of -1, prints the mean score per model for\n"
    "  turn 1, turn 2 and overall (and per category when --questions names the question file).\n";

/* ---- answers ---- */

typedef struct {
    char *name;
    json_t *arr; /* records sorted by question_id */
} model_answers;

static int load_answer_file(model_answers *ma, const char *path, rmu_err *e) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (!rmu_ends_with(b, ".jsonl")) return rmu_errf(e, "%s: answer files are MODEL.jsonl", path);
    if (!(ma->name = strndup(b, n - 6))) return rmu_errf(e, "out of memory");
    if (!rmu_file_exists(path)) return rmu_errf(e, "%s: no such file", path);
    return rmu_mtb_answers_load(path, &ma->arr, e);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A folder's *.jsonl in name order (FastChat's sorted glob), or a comma list of files. */
static int load_answers(const char *spec, model_answers **out, int *nout, rmu_err *e) {
    char **files = NULL;
    int nf = 0, rc = 0;
    struct stat st;
    if (!stat(spec, &st) && S_ISDIR(st.st_mode)) {
        DIR *d = opendir(spec);
        if (!d) return rmu_errf(e, "%s: cannot list: %s", spec, strerror(errno));
        struct dirent *de;
        while (!rc && (de = readdir(d))) {
            if (de->d_name[0] == '.' || !rmu_ends_with(de->d_name, ".jsonl")) continue;
            char **nfs = realloc(files, sizeof *files * (size_t)(nf + 1));
            char p[4096];
            if (!nfs || rmu_path_join(p, sizeof p, spec, de->d_name, e)) rc = nfs ? -1 : rmu_errf(e, "out of memory");
            if (nfs) files = nfs;
            if (!rc && !(files[nf++] = strdup(p))) rc = rmu_errf(e, "out of memory");
        }
        closedir(d);
        if (!rc && nf == 0) rc = rmu_errf(e, "%s: no *.jsonl answer files", spec);
        if (!rc) qsort(files, (size_t)nf, sizeof *files, cmp_str);
    } else {
        char *dup = strdup(spec);
        for (char *tok = dup ? strtok(dup, ",") : NULL; tok && !rc; tok = strtok(NULL, ",")) {
            char **nfs = realloc(files, sizeof *files * (size_t)(nf + 1));
            if (!nfs) rc = rmu_errf(e, "out of memory");
            else if (!(nfs[nf++] = strdup(tok))) rc = rmu_errf(e, "out of memory");
            if (nfs) files = nfs;
        }
        if (!dup) rc = rmu_errf(e, "out of memory");
        free(dup);
    }
    *out = rc ? NULL : calloc((size_t)nf, sizeof **out);
    if (!rc && !*out) rc = rmu_errf(e, "out of memory");
    for (int i = 0; !rc && i < nf; i++) {
        rc = load_answer_file(&(*out)[i], files[i], e);
        *nout = i + 1;
    }
    for (int i = 0; i < nf; i++) free(files[i]);
    free(files);
    return rc;
}

static void free_answers(model_answers *m, int n) {
    for (int i = 0; m && i < n; i++) free(m[i].name), json_decref(m[i].arr);
    free(m);
}

static const json_t *find_answer(const model_answers *m, const json_t *qid) {
    int k = rmu_mtb_answers_find(m->arr, qid);
    return k < 0 ? NULL : json_array_get(m->arr, (size_t)k);
}

/* ---- matches ---- */

typedef struct {
    const rmu_mtb_question *q;
    const char *model, *prompt_name;
    int turn;
    char *user_prompt;
} match;

typedef struct {
    match *m;
    int n, next, done, failed, fatal;
    volatile int cancel;
    const rmu_judge_prompts *jp;
    const char *judge_model, *judge_url, *api_key, *out;
    int out_fd, max_retries, quiet;
    long timeout_s;
    pthread_mutex_t mu;
    rmu_err err;  /* the first permanent error */
    rmu_err last; /* the last error that retries did not cure */
} pool;

static int append_line(pool *p, const char *line, rmu_err *e) {
    size_t n = strlen(line);
    /* one write per line: a kill never leaves half a line from a completed write */
    ssize_t w = write(p->out_fd, line, n);
    if (w != (ssize_t)n) return rmu_errf(e, "%s: write failed: %s", p->out, w < 0 ? strerror(errno) : "short write");
    if (fdatasync(p->out_fd)) return rmu_errf(e, "%s: fsync failed: %s", p->out, strerror(errno));
    return 0;
}

static void *worker(void *arg) {
    pool *p = arg;
    rmu_oai_client c;
    rmu_err e;
    if (rmu_oai_init(&c, p->judge_url, p->api_key, &e)) {
        pthread_mutex_lock(&p->mu);
        if (!p->fatal) p->fatal = 1, p->err = e;
        p->cancel = 1;
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    c.max_retries = p->max_retries;
    c.timeout_s = p->timeout_s;
    c.cancel = &p->cancel;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int i = p->cancel || p->next >= p->n ? -1 : p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i < 0) break;
        match *m = &p->m[i];
        const rmu_judge_prompt *jp = rmu_judge_prompts_get(p->jp, m->prompt_name);
        int permanent = 0;
        char *judgment = rmu_oai_chat(&c, p->judge_model, jp->system_prompt, m->user_prompt, 0.0, 2048, &permanent, &e);
        char *line = NULL;
        double score = -1;
        if (judgment) {
            int is_int;
            score = rmu_judge_parse_score(judgment, &is_int);
            line = rmu_judge_record_line(m->q->qid, m->model, p->judge_model, m->prompt_name, m->user_prompt, judgment,
                                         score, is_int, m->turn, rmu_wall_s());
            if (!line) rmu_errf(&e, "out of memory (or a reply that is not UTF-8) writing a judgment"), permanent = 1;
        }
        pthread_mutex_lock(&p->mu);
        if (line && append_line(p, line, &e)) permanent = 1, free(line), line = NULL;
        if (line) {
            p->done++;
            if (!p->quiet) {
                char *qs = json_dumps(m->q->qid, JSON_ENCODE_ANY);
                char sc[32];
                rmu_judge_float_repr(score, sc);
                fprintf(stderr, "rmu mtbench judge: [%d/%d] question %s, turn %d, model %s: score %s\n", p->done + p->failed,
                        p->n, qs ? qs : "?", m->turn, m->model, score == -1 ? "-1 (no rating)" : sc);
                free(qs);
            }
        } else if (permanent) {
            if (!p->fatal) p->fatal = 1, p->err = e;
            p->cancel = 1;
        } else {
            p->failed++;
            p->last = e;
            if (!p->quiet) fprintf(stderr, "rmu mtbench judge: %s\n", e.msg);
        }
        pthread_mutex_unlock(&p->mu);
        free(line);
        free(judgment);
    }
    rmu_oai_free(&c);
    return NULL;
}

/* Keys of the judgments already in OUT; a line cut by a kill is dropped from the file. */
typedef struct {
    json_t *seen; /* object: key -> true */
    size_t good_end;
} resume_state;

static void judgment_key(char *key, size_t cap, const json_t *qid, const char *model, int turn, const char *jm,
                         const char *pn) {
    char *q = json_dumps(qid, JSON_ENCODE_ANY);
    snprintf(key, cap, "%s\x1f%s\x1f%d\x1f%s\x1f%s", q ? q : "", model, turn, jm, pn);
    free(q);
}

static int resume_row(void *ud, json_t *o, long line, rmu_err *e) {
    resume_state *r = ud;
    json_t *judge = json_object_get(o, "judge");
    const char *model = json_string_value(json_object_get(o, "model"));
    const char *jm = json_string_value(json_array_get(judge, 0)), *pn = json_string_value(json_array_get(judge, 1));
    json_t *turn = json_object_get(o, "turn"), *qid = json_object_get(o, "question_id");
    if (!model || !jm || !pn || !json_is_integer(turn) || !qid)
        return rmu_errf(e, "line %ld: not a judgment record (refusing to append to it)", line);
    char key[1024];
    judgment_key(key, sizeof key, qid, model, (int)json_integer_value(turn), jm, pn);
    json_object_set_new(r->seen, key, json_true());
    return 0;
}

static int resume_load(const char *path, resume_state *r, rmu_err *e) {
    r->seen = json_object();
    if (!rmu_file_exists(path)) return 0;
    size_t len;
    char *text = rmu_file_read_all(path, &len, e);
    if (!text) return -1;
    int rc = rmu_jsonl_parse(path, text, len, RMU_JSONL_TORN_TAIL_OK, resume_row, r, e);
    if (!rc && len && text[len - 1] != '\n') { /* drop the torn tail before appending */
        char *nl = memrchr(text, '\n', len);
        size_t keep = nl ? (size_t)(nl - text) + 1 : 0;
        if (truncate(path, (off_t)keep)) rc = rmu_errf(e, "%s: cannot drop its cut last line: %s", path, strerror(errno));
    }
    free(text);
    if (rc) rmu_err_prefix(e, "%s", path);
    return rc;
}

typedef struct {
    const char *questions, *answers, *prompts, *reference, *out, *url, *judge_model, *key_env, *models;
    long parallel, first_n, max_retries, timeout;
    int quiet;
} judge_args;

static int parse_judge(const char *cmd, int argc, char **argv, judge_args *a) {
    memset(a, 0, sizeof *a);
    a->key_env = "OPENAI_API_KEY";
    a->parallel = 1;
    a->max_retries = 8;
    a->timeout = 300;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        const char **s = !strcmp(f, "--questions")       ? &a->questions
                         : !strcmp(f, "--answers")       ? &a->answers
                         : !strcmp(f, "--judge-prompts") ? &a->prompts
                         : !strcmp(f, "--reference")     ? &a->reference
                         : !strcmp(f, "--out")           ? &a->out
                         : !strcmp(f, "--judge-url")     ? &a->url
                         : !strcmp(f, "--judge-model")   ? &a->judge_model
                         : !strcmp(f, "--api-key-env")   ? &a->key_env
                         : !strcmp(f, "--model-list")    ? &a->models
                                                         : NULL;
        long *l = !strcmp(f, "--parallel") ? &a->parallel : !strcmp(f, "--first-n") ? &a->first_n
                  : !strcmp(f, "--max-retries") ? &a->max_retries : !strcmp(f, "--timeout") ? &a->timeout : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(JUDGE_USAGE, stdout);
            return 1;
        } else if (!strcmp(f, "-q") || !strcmp(f, "--quiet")) {
            a->quiet = 1;
        } else if (s) {
            if (!(*s = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (l) {
            long hi = l == &a->parallel ? 256 : l == &a->max_retries ? 100 : 1L << 30;
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, l == &a->max_retries ? 0 : 1, hi, l)) return 2;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    const char *need[][2] = {{a->questions, "--questions"}, {a->answers, "--answers"}, {a->prompts, "--judge-prompts"},
                             {a->out, "--out"}, {a->url, "--judge-url"}, {a->judge_model, "--judge-model"}};
    for (size_t k = 0; k < sizeof need / sizeof need[0]; k++)
        if (!need[k][0]) return cli_fail(cmd, 2, "%s is required (see --help)", need[k][1]);
    return 0;
}

/* Which models to judge: --model-list (in its order) or every answer file. */
static int pick_models(const char *cmd, const judge_args *a, model_answers *ma, int nma, const model_answers ***sel,
                       int *nsel) {
    *sel = calloc((size_t)nma + 64, sizeof **sel);
    if (!*sel) return cli_fail(cmd, 1, "out of memory");
    *nsel = 0;
    if (!a->models) {
        for (int i = 0; i < nma; i++) (*sel)[(*nsel)++] = &ma[i];
        return 0;
    }
    char *dup = strdup(a->models);
    int rc = dup ? 0 : cli_fail(cmd, 1, "out of memory");
    for (char *t = dup ? strtok(dup, ",") : NULL; t && !rc; t = strtok(NULL, ",")) {
        int k = 0;
        while (k < nma && strcmp(ma[k].name, t)) k++;
        if (k == nma) rc = cli_fail(cmd, 1, "--model-list: no answer file for model '%s' in %s", t, a->answers);
        else if (*nsel < nma + 64) (*sel)[(*nsel)++] = &ma[k];
    }
    free(dup);
    return rc;
}

static int cmd_judge(int argc, char **argv) {
    const char *cmd = "mtbench judge";
    judge_args a;
    int rc = parse_judge(cmd, argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    rmu_err e;
    rmu_mtb_questions qs = {0};
    rmu_judge_prompts jp = {0};
    model_answers *ma = NULL, *ref = NULL;
    int nma = 0, nref = 0, nsel = 0, nm = 0;
    const model_answers **sel = NULL;
    match *m = NULL;
    resume_state rs = {0};
    pool p = {0};
    rc = 1;
    if (rmu_mtb_load_questions(&qs, a.questions, &e) || rmu_judge_prompts_load(&jp, a.prompts, &e) ||
        load_answers(a.answers, &ma, &nma, &e) || (a.reference && load_answers(a.reference, &ref, &nref, &e))) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    if (pick_models(cmd, &a, ma, nma, &sel, &nsel)) goto out;
    int nq = a.first_n && a.first_n < qs.n ? (int)a.first_n : qs.n;
    if (!(m = calloc((size_t)nq * nsel * 2 + 1, sizeof *m))) {
        cli_fail(cmd, 1, "out of memory");
        goto out;
    }
    if (resume_load(a.out, &rs, &e)) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    /* FastChat's match order: default turn 1, math turn 1, default turn 2, math turn 2 */
    int skipped = 0;
    for (int pass = 0; pass < 4; pass++) {
        int turn = pass < 2 ? 1 : 2, want_ref = pass % 2;
        for (int qi = 0; qi < nq; qi++) {
            const rmu_mtb_question *q = &qs.q[qi];
            if (rmu_judge_needs_ref(q->category) != want_ref || (turn == 2 && q->nturns != 2)) continue;
            const json_t *r = NULL;
            if (want_ref && !(r = nref ? find_answer(&ref[0], q->qid) : NULL)) {
                char *s = json_dumps(q->qid, JSON_ENCODE_ANY);
                cli_fail(cmd, 1, "question %s (%s) needs a reference answer: %s", s ? s : "?", q->category,
                         a.reference ? "none in --reference" : "give --reference");
                free(s);
                goto out;
            }
            const char *pn = rmu_judge_prompt_name(q->category, turn);
            for (int k = 0; k < nsel; k++) {
                const json_t *ans = find_answer(sel[k], q->qid);
                if (!ans) {
                    char *s = json_dumps(q->qid, JSON_ENCODE_ANY);
                    cli_fail(cmd, 1, "model %s has no answer to question %s (as FastChat's check_data)", sel[k]->name,
                             s ? s : "?");
                    free(s);
                    goto out;
                }
                char key[1024];
                judgment_key(key, sizeof key, q->qid, sel[k]->name, turn, a.judge_model, pn);
                if (json_object_get(rs.seen, key)) {
                    skipped++;
                    continue;
                }
                match *x = &m[nm];
                *x = (match){q, sel[k]->name, pn, turn, NULL};
                if (!(x->user_prompt = rmu_judge_user_prompt(rmu_judge_prompts_get(&jp, pn), q, ans, r, turn, &e))) {
                    cli_fail(cmd, 1, "%s", e.msg);
                    goto out;
                }
                nm++;
            }
        }
    }
    if (!a.quiet)
        fprintf(stderr, "rmu mtbench judge: %d judgments to do (%d already in %s), %d model(s), judge %s\n", nm, skipped,
                a.out, nsel, a.judge_model);
    if (nm == 0) {
        rc = 0;
        goto out;
    }
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", a.out);
        char *sl = strrchr(dir, '/');
        if (sl && sl != dir) {
            *sl = 0;
            if (rmu_mkdirs(dir, &e)) {
                cli_fail(cmd, 1, "%s", e.msg);
                goto out;
            }
        }
    }
    p = (pool){.m = m, .n = nm, .jp = &jp, .judge_model = a.judge_model, .judge_url = a.url, .out = a.out,
               .max_retries = (int)a.max_retries, .timeout_s = a.timeout, .quiet = a.quiet};
    p.api_key = a.key_env && *a.key_env ? getenv(a.key_env) : NULL;
    if ((p.out_fd = open(a.out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        cli_fail(cmd, 1, "%s: cannot open for appending: %s", a.out, strerror(errno));
        goto out;
    }
    pthread_mutex_init(&p.mu, NULL);
    int nt = (int)(a.parallel < nm ? a.parallel : nm);
    pthread_t th[256];
    int started = 0;
    for (; started < nt; started++)
        if (pthread_create(&th[started], NULL, worker, &p)) break;
    if (started == 0) worker(&p);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&p.mu);
    close(p.out_fd);
    if (p.fatal) cli_fail(cmd, 1, "%s", p.err.msg);
    else if (p.failed)
        cli_fail(cmd, 1, "%d of %d judgments failed (last: %s); the rest are in %s: rerun to retry", p.failed, nm,
                 p.last.msg, a.out);
    else {
        if (!a.quiet) fprintf(stderr, "rmu mtbench judge: %d judgments written to %s\n", p.done, a.out);
        rc = 0;
    }
out:
    for (int i = 0; i < nm; i++) free(m[i].user_prompt);
    free(m);
    json_decref(rs.seen);
    free(sel);
    free_answers(ma, nma);
    free_answers(ref, nref);
    rmu_judge_prompts_free(&jp);
    rmu_mtb_questions_free(&qs);
    return rc;
}

/* ---- show ---- */

static double mean(double s, long n) { return n ? s / n : 0; }

static int cmp_avg(const void *a, const void *b) {
    const rmu_judge_model_stats *x = a, *y = b;
    double u = mean(x->sum[0], x->n[0]), v = mean(y->sum[0], y->n[0]);
    return u < v ? 1 : u > v ? -1 : strcmp(x->model, y->model);
}

static int cmd_show(int argc, char **argv) {
    const char *cmd = "mtbench show", *path = NULL, *model = NULL, *qpath = NULL, *output = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char **s = !strcmp(f, "--judgments") || !strcmp(f, "--input-file") ? &path
                         : !strcmp(f, "--model")                                 ? &model
                         : !strcmp(f, "--questions")                             ? &qpath
                         : !strcmp(f, "--output")                                ? &output
                                                                                 : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(SHOW_USAGE, stdout);
            return 0;
        }
        if (!s) return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        if (!(*s = cli_value(cmd, argc, argv, &i))) return 2;
    }
    if (!path) return cli_fail(cmd, 2, "--judgments FILE is required");
    rmu_err e;
    rmu_mtb_questions qs = {0};
    rmu_judge_stats st;
    if (qpath && rmu_mtb_load_questions(&qs, qpath, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    if (rmu_judge_stats_load(&st, path, qpath ? &qs : NULL, model, &e)) {
        rmu_mtb_questions_free(&qs);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    int rc = 0;
    if (st.nmodels == 0) rc = cli_fail(cmd, 1, "%s: no scored judgments%s%s", path, model ? " for model " : "", model ? model : "");
    qsort(st.m, (size_t)st.nmodels, sizeof *st.m, cmp_avg);
    json_t *root = json_object(), *models = json_object();
    if (!rc) {
        printf("| model | turn 1 | turn 2 | average | judgments |\n|---|---:|---:|---:|---:|\n");
        for (int i = 0; i < st.nmodels; i++) {
            rmu_judge_model_stats *s = &st.m[i];
            printf("| %s | %.6f | %.6f | %.6f | %ld |\n", s->model, mean(s->sum[1], s->n[1]), mean(s->sum[2], s->n[2]),
                   mean(s->sum[0], s->n[0]), s->n[0]);
            json_t *o = json_pack("{s:f,s:f,s:f,s:I,s:I,s:I}", "turn1", mean(s->sum[1], s->n[1]), "turn2",
                                  mean(s->sum[2], s->n[2]), "average", mean(s->sum[0], s->n[0]), "n", (json_int_t)s->n[0],
                                  "n_turn1", (json_int_t)s->n[1], "n_turn2", (json_int_t)s->n[2]);
            if (st.ncats) {
                json_t *cats = json_object();
                for (int c = 0; c < st.ncats; c++)
                    if (s->cat_n[c]) json_object_set_new(cats, st.cats[c], json_real(mean(s->cat_sum[c], s->cat_n[c])));
                json_object_set_new(o, "categories", cats);
            }
            json_object_set_new(models, s->model, o);
        }
        if (st.ncats) {
            printf("\n| category |");
            for (int i = 0; i < st.nmodels; i++) printf(" %s |", st.m[i].model);
            printf("\n|---|");
            for (int i = 0; i < st.nmodels; i++) printf("---:|");
            printf("\n");
            for (int c = 0; c < st.ncats; c++) {
                printf("| %s |", st.cats[c]);
                for (int i = 0; i < st.nmodels; i++)
                    if (st.m[i].cat_n[c]) printf(" %.4f |", mean(st.m[i].cat_sum[c], st.m[i].cat_n[c]));
                    else printf(" - |");
                printf("\n");
            }
        }
        if (st.dropped) printf("\n(%ld judgments without a rating dropped, as show_result.py does)\n", st.dropped);
        json_object_set_new(root, "judgments", json_string(path));
        json_object_set_new(root, "models", models);
        json_object_set_new(root, "dropped", json_integer(st.dropped));
        models = NULL;
        if (output && rmu_json_write_file(output, root, JSON_INDENT(2), &e)) rc = cli_fail(cmd, 1, "%s", e.msg);
    }
    json_decref(models);
    json_decref(root);
    rmu_judge_stats_free(&st);
    rmu_mtb_questions_free(&qs);
    return rc;
}

int rmu_cmd_mtbench_judge(int argc, char **argv) { return cmd_judge(argc, argv); }
int rmu_cmd_mtbench_show(int argc, char **argv) { return cmd_show(argc, argv); }
