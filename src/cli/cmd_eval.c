/* cmd_eval.c - `rmu eval`: WMDP / MMLU / multiple-choice accuracy scored as
 * lm-evaluation-harness v0.4.2 scores it (see src/eval/eval.h for tasks and --data). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "fieldmap.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/util.h"
#include "eval/eval.h"
#include "model/check.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static const char *USAGE =
    "usage: rmu eval -m DIR --tasks LIST --data PATH[,PATH...] [--num-fewshot K] [--limit N]\n"
    "                [--batch-size B] [--bos] [--format letter|cloze] [--output results.json]\n"
    "                [--log-samples FILE.jsonl] [--description-newlines 1|2] [--max-length N]\n"
    "                [--precision auto|bf16|fp32]\n"
    "\n"
    "  --tasks    wmdp, wmdp_bio, wmdp_chem, wmdp_cyber, mmlu, mmlu_stem, mmlu_other,\n"
    "             mmlu_social_sciences, mmlu_humanities, mmlu_SUBJECT (57), mcq; comma separated\n"
    "  --data     comma separated; NAME=PATH serves task/group NAME, NAME_dev=PATH its few-shot\n"
    "             rows; a plain folder is searched by every task: wmdp-bio.jsonl / wmdp_bio.jsonl /\n"
    "             bio.jsonl (and .json; chem, cyber alike); MMLU test/SUBJECT_test.csv and\n"
    "             dev/SUBJECT_dev.csv (original layout) or SUBJECT.jsonl, test.jsonl with a\n"
    "             \"subject\" per row; mcq.jsonl. A plain file goes to the task its name names,\n"
    "             or, alone, to the run's only task. JSONL/JSON rows: {question, choices,\n"
    "             answer (index or letter), subject}.\n"
    "  --limit    first N rows of each task (a value < 1 is a fraction, as lm-eval)\n"
    "  --batch-size  rows tokenized together and scored in token order, so shared prefixes\n"
    "             are reused from the KV cache (results do not depend on it); default 1\n"
    "  --bos      prepend BOS (lm-eval add_bos_token=True); default off, as lm-eval's HF model\n"
    "  --format   cloze (mcq only): score \" \" + choice text, report acc and acc_norm\n"
    "  --description-newlines  1 (default) reproduces v0.4.2, whose Jinja rendering drops the\n"
    "             description's last newline; 2 matches lm-eval >= 0.4.4\n"
    "  --max-length  lm-eval max_length (left truncation); default max_position_embeddings\n"
    "  --precision  matmul arithmetic: auto (bf16 for BF16 weights, as a bf16 PyTorch run;\n"
    "             the default, or env RMU_PRECISION), bf16, fp32 (exact fp32)\n";

typedef struct eval_args {
    const char *model, *tasks, *data, *output, *log_samples, *dump_requests;
    int fewshot, batch, bos, onepass, prefix_cache, desc_nl, max_length, quiet;
    double limit;
    rmu_mcq_format format;
    rmu_prec prec;
} eval_args;

static int parse_args(const char *cmd, int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->batch = 1;
    a->onepass = 1;
    a->prefix_cache = 1;
    a->desc_nl = 1;
    const char *prec = NULL;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        long l;
        double d;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 1;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (!(a->model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--tasks")) {
            if (!(a->tasks = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--data")) {
            if (!(a->data = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--output") || !strcmp(f, "-o")) {
            if (!(a->output = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--log-samples")) {
            if (!(a->log_samples = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--dump-requests")) { /* hidden: token ids + logliks for oracle checks */
            if (!(a->dump_requests = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--num-fewshot")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1000, &l)) return 2;
            a->fewshot = (int)l;
        } else if (!strcmp(f, "--limit")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_float(cmd, f, v, 0, 1e12, &d)) return 2;
            if (d > 0 && d >= 1.0 && d != (double)(long long)d)
                return cli_fail(cmd, 2, "--limit: a row count must be whole (or a fraction below 1), got '%s'", v);
            a->limit = d;
        } else if (!strcmp(f, "--batch-size")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 20, &l)) return 2;
            a->batch = (int)l;
        } else if (!strcmp(f, "--max-length")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 2, 1 << 22, &l)) return 2;
            a->max_length = (int)l;
        } else if (!strcmp(f, "--description-newlines")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 2, &l)) return 2;
            a->desc_nl = (int)l;
        } else if (!strcmp(f, "--format")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "letter"))
                a->format = RMU_MCQ_LETTER;
            else if (!strcmp(v, "cloze"))
                a->format = RMU_MCQ_CLOZE;
            else
                return cli_fail(cmd, 2, "--format: expected letter or cloze, got '%s'", v);
        } else if (!strcmp(f, "--bos")) {
            a->bos = 1;
        } else if (!strcmp(f, "--no-onepass")) { /* hidden: one forward per choice */
            a->onepass = 0;
        } else if (!strcmp(f, "--no-prefix-cache")) { /* hidden: every request from position 0 */
            a->prefix_cache = 0;
        } else if (!strcmp(f, "--quiet")) {
            a->quiet = 1;
        } else if (!strcmp(f, "--precision")) {
            if (!(prec = cli_value(cmd, argc, argv, &i))) return 2;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    if (cli_precision(cmd, prec, &a->prec)) return 2;
    if (!a->model) return cli_fail(cmd, 2, "-m DIR is required");
    if (!a->tasks) return cli_fail(cmd, 2, "--tasks LIST is required");
    if (!a->data) return cli_fail(cmd, 2, "--data PATH is required");
    return 0;
}

/* ---- progress on stderr: a bar on a terminal, else a line every ~10% ---- */

typedef struct progress {
    int tty, quiet, last_decile;
    double t0;
    long total;
} progress;


static void fmt_eta(double s, char *out, size_t cap) {
    if (s < 0 || s > 1e7) {
        snprintf(out, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, cap, "%lds", t);
}

static void on_progress(progress *pr, long done, long total) {
    if (pr->quiet || total <= 0) return;
    double el = rmu_now_s() - pr->t0, rate = el > 0 ? done / el : 0;
    char eta[32];
    fmt_eta(rate > 0 ? (total - done) / rate : -1, eta, sizeof eta);
    if (pr->tty) {
        static const int W = 30;
        int fill = (int)((double)done / total * W);
        char bar[32];
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        fprintf(stderr, "\r[%s] %ld/%ld %5.1f%% %.1f q/s ETA %s   ", bar, done, total, 100.0 * done / total, rate, eta);
        if (done == total) fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    int dec = (int)(done * 10 / total);
    if (dec > pr->last_decile || done == total) {
        pr->last_decile = dec;
        fprintf(stderr, "rmu eval: %ld/%ld questions (%d%%), %.1f q/s, ETA %s\n", done, total, (int)(100 * done / total),
                rate, eta);
    }
}

/* ---- per-question outputs ---- */

typedef struct sink {
    const rmu_eval_plan *plan;
    rmu_afile log;
    int log_open;
    json_t *dump; /* array, or NULL */
    progress pr;
} sink;

static json_t *ids_json(const int *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static int on_sample(void *ud, const rmu_eval_sample *s, rmu_err *e) {
    sink *k = ud;
    const rmu_eval_node *d = &k->plan->nodes[s->node];
    const rmu_mcq_item *it = &d->test.items[s->row];
    if (k->log_open) {
        json_t *o = json_object(), *conts = json_array(), *ll = json_array(), *gr = json_array(), *ch = json_array();
        for (int c = 0; c < s->nchoices; c++) {
            json_array_append_new(conts, json_string(s->continuations[c]));
            json_array_append_new(ll, json_real(s->loglik[c]));
            json_array_append_new(gr, json_boolean(s->greedy[c]));
            json_array_append_new(ch, json_string(it->choices[c]));
        }
        json_object_set_new(o, "task", json_string(d->name));
        json_object_set_new(o, "doc_id", json_integer(s->row));
        json_t *doc = json_object();
        json_object_set_new(doc, "question", json_string(it->question));
        json_object_set_new(doc, "choices", ch);
        json_object_set_new(doc, "answer", json_integer(it->answer));
        if (it->subject) json_object_set_new(doc, "subject", json_string(it->subject));
        json_object_set_new(o, "doc", doc);
        json_object_set_new(o, "source", json_sprintf("%s:%d", d->test.path, it->line));
        json_object_set_new(o, "context", json_string(s->context));
        json_object_set_new(o, "continuations", conts);
        json_object_set_new(o, "loglik", ll);
        json_object_set_new(o, "is_greedy", gr);
        json_object_set_new(o, "gold", json_integer(s->gold));
        json_object_set_new(o, "pred", json_integer(s->pred));
        json_object_set_new(o, "acc", json_real(s->pred == s->gold));
        if (s->pred_norm >= 0) {
            json_object_set_new(o, "pred_norm", json_integer(s->pred_norm));
            json_object_set_new(o, "acc_norm", json_real(s->pred_norm == s->gold));
        }
        json_object_set_new(o, "onepass", json_boolean(s->onepass));
        int r = rmu_json_write_line(&k->log, o, JSON_COMPACT | JSON_REAL_PRECISION(17), e);
        json_decref(o);
        if (r) {
            k->log_open = 0;
            return -1;
        }
    }
    if (k->dump)
        for (int c = 0; c < s->nchoices; c++) {
            json_t *o = json_object();
            json_object_set_new(o, "task", json_string(d->name));
            json_object_set_new(o, "doc_id", json_integer(s->row));
            json_object_set_new(o, "choice", json_integer(c));
            json_object_set_new(o, "context_ids", ids_json(s->ctx_ids[c], s->n_ctx[c]));
            json_object_set_new(o, "continuation_ids", ids_json(s->cont_ids[c], s->n_cont[c]));
            json_object_set_new(o, "loglik", json_real(s->loglik[c]));
            json_object_set_new(o, "greedy", json_boolean(s->greedy[c]));
            json_object_set_new(o, "onepass", json_boolean(s->onepass));
            json_array_append_new(k->dump, o);
        }
    return 0;
}

static void on_prog(void *ud, long done, long total) { on_progress(&((sink *)ud)->pr, done, total); }

static int write_json(const char *path, json_t *j, size_t flags, rmu_err *e) {
    return rmu_json_write_file(path, j, flags | JSON_REAL_PRECISION(17), e);
}

int rmu_cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    eval_args a;
    int rc = parse_args(cmd, argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    static const cli_field fields[] = {
        {"tasks", "--tasks"}, {"format", "--format"}, {"data", "--data"}, {"num_fewshot", "--num-fewshot"}, {NULL, NULL}};
    rmu_err e;
    rmu_eval_plan plan;
    if (rmu_eval_plan_init(&plan, a.tasks, a.format, &e)) {
        cli_field_flags(&e, fields);
        return cli_fail(cmd, 2, "%s", e.msg);
    }
    plan.desc_newlines = a.desc_nl;
    if (rmu_eval_plan_load(&plan, a.data, a.fewshot, a.limit, &e)) {
        rmu_eval_plan_free(&plan);
        cli_field_flags(&e, fields);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    rmu_model model;
    if (rmu_model_load(&model, a.model, &e)) {
        rmu_eval_plan_free(&plan);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    cli_model_note(cmd, &model.cfg);
    rmu_model_set_precision(&model, a.prec);
    rmu_tokenizer *tok = rmu_tok_load(a.model, &e);
    if (!tok) {
        rmu_model_free(&model);
        rmu_eval_plan_free(&plan);
        return cli_fail(cmd, 1, "%s", e.msg);
    }
    rc = 1;
    sink sk = {.plan = &plan};
    sk.pr.tty = isatty(2);
    sk.pr.quiet = a.quiet;
    sk.pr.last_decile = 0;
    if (rmu_check_tokenizer(&model, tok, &e)) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    if (a.log_samples) {
        if (rmu_afile_open(&sk.log, a.log_samples, &e)) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
        sk.log_open = 1;
    }
    if (a.dump_requests && !(sk.dump = json_array())) {
        cli_fail(cmd, 1, "out of memory");
        goto out;
    }
    rmu_eval_opts o = {
        .add_bos = a.bos,
        .max_length = a.max_length,
        .batch = a.batch,
        .onepass = a.onepass,
        .prefix_cache = a.prefix_cache,
        .on_sample = (a.log_samples || a.dump_requests) ? on_sample : NULL,
        .on_progress = on_prog,
        .ud = &sk,
    };
    rmu_eval_counts cnt;
    sk.pr.t0 = rmu_now_s();
    sk.pr.total = rmu_eval_plan_rows(&plan);
    if (rmu_eval_run(&plan, &model, tok, &o, &cnt, &e)) {
        if (sk.pr.tty && !a.quiet) fputc('\n', stderr);
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    double secs = rmu_now_s() - sk.pr.t0;
    if (sk.log_open) {
        sk.log_open = 0;
        if (rmu_afile_commit(&sk.log, &e)) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
    }
    if (sk.dump && write_json(a.dump_requests, sk.dump, JSON_COMPACT, &e)) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    if (a.output) {
        int L = a.max_length > 0 ? a.max_length : model.cfg.max_position_embeddings;
        char margs[4200];
        snprintf(margs, sizeof margs, "pretrained=%s", a.model);
        json_t *config = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:i, s:b, s:s, s:i, s:i, s:b, s:b}", "model", "rmu",
                                   "model_args", margs, "tasks", a.tasks, "data", a.data, "num_fewshot", a.fewshot,
                                   "limit", a.limit > 0 ? json_real(a.limit) : json_null(), "batch_size", a.batch,
                                   "add_bos_token", a.bos, "format", a.format == RMU_MCQ_CLOZE ? "cloze" : "letter",
                                   "description_newlines", a.desc_nl, "max_length", L, "onepass", a.onepass,
                                   "prefix_cache", a.prefix_cache);
        json_t *res = rmu_eval_results_json(&plan, config);
        if (!res) {
            cli_fail(cmd, 1, "out of memory");
            goto out;
        }
        json_object_set_new(res, "rmu_stats",
                            json_pack("{s:I, s:I, s:f, s:f, s:I, s:I, s:I}", "questions", (json_int_t)cnt.questions,
                                      "onepass_questions", (json_int_t)cnt.onepass_questions, "seconds", secs,
                                      "questions_per_second", secs > 0 ? cnt.questions / secs : 0.0, "forward_calls",
                                      (json_int_t)cnt.forward_calls, "tokens_fed", (json_int_t)cnt.tokens_fed,
                                      "tokens_reused", (json_int_t)cnt.tokens_reused));
        json_object_set_new(res, "date", json_real((double)time(NULL)));
        int wr = write_json(a.output, res, JSON_INDENT(2), &e);
        json_decref(res);
        if (wr) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
    }
    char *table = rmu_eval_table(&plan);
    if (table) fputs(table, stdout);
    free(table);
    if (!a.quiet)
        fprintf(stderr, "rmu eval: %ld questions in %.1f s (%.1f questions/s; %ld one-pass; %ld tokens fed, %ld reused)\n",
                cnt.questions, secs, secs > 0 ? cnt.questions / secs : 0.0, cnt.onepass_questions, cnt.tokens_fed,
                cnt.tokens_reused);
    rc = 0;
out:
    if (sk.log_open) rmu_afile_abort(&sk.log);
    json_decref(sk.dump);
    rmu_tok_free(tok);
    rmu_model_free(&model);
    rmu_eval_plan_free(&plan);
    return rc;
}
