/* cmd_mtbench.c - `rmu mtbench`: MT-Bench answers in FastChat's model-answer format,
 * resumable (see src/eval/mtbench.h for the generation rules). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clidist.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/util.h"
#include "eval/mtbench.h"
#include "model/check.h"
#include "model/model.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

static const char *USAGE =
    "usage: rmu mtbench -m DIR --questions question.jsonl --out answers.jsonl [--model-id NAME]\n"
    "                   [--max-new-tokens 1024] [--template auto|zephyr|plain] [--ctx N] [--seed S]\n"
    "                   [--question-begin I] [--question-end J]\n"
    "       rmu mtbench judge ...   score answers with a judge model (rmu mtbench judge --help)\n"
    "       rmu mtbench show ...    average the scores (rmu mtbench show --help)\n"
    "\n"
    "  Two (or more) turns per question through the chat template, the second seeing the first\n"
    "  answer; temperature by category as FastChat (writing/roleplay 0.7, extraction/math/\n"
    "  coding/reasoning greedy, stem/humanities 0.1, others 0.7), seeded per question from --seed.\n"
    "  --out is rewritten atomically after every question, sorted by question_id; questions\n"
    "  already in it are skipped, so an interrupted run resumes. A turn whose prompt does not\n"
    "  fit --ctx (default min(max_position_embeddings, 4096)) is answered \"ERROR\".\n"
    "  --model-id defaults to the model folder's name; --question-begin/--question-end select\n"
    "  questions [I, J) of the file, as FastChat's options.\n";

typedef struct mtb_args {
    const char *model, *questions, *out, *model_id, *template_name;
    int max_new, ctx, qbegin, qend;
    uint64_t seed;
} mtb_args;

static int parse_args(const char *cmd, int argc, char **argv, mtb_args *a) {
    memset(a, 0, sizeof *a);
    a->max_new = 1024;
    a->template_name = "auto";
    a->qend = -1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        long l;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 1;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (!(a->model = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--questions")) {
            if (!(a->questions = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--out") || !strcmp(f, "--answer-file")) {
            if (!(a->out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--model-id")) {
            if (!(a->model_id = cli_value(cmd, argc, argv, &i))) return 2;
            if (!*a->model_id) return cli_fail(cmd, 2, "--model-id: empty name");
        } else if (!strcmp(f, "--template")) {
            if (!(a->template_name = cli_value(cmd, argc, argv, &i))) return 2;
            if (rmu_chat_kind_parse(a->template_name) < 0)
                return cli_fail(cmd, 2, "--template: expected auto, zephyr or plain, got '%s'", a->template_name);
        } else if (!strcmp(f, "--max-new-tokens") || !strcmp(f, "--max-new-token")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 24, &l)) return 2;
            a->max_new = (int)l;
        } else if (!strcmp(f, "--ctx")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 8, 1 << 22, &l)) return 2;
            a->ctx = (int)l;
        } else if (!strcmp(f, "--seed")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 0x7fffffffffffffffL, &l)) return 2;
            a->seed = (uint64_t)l;
        } else if (!strcmp(f, "--question-begin")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 30, &l)) return 2;
            a->qbegin = (int)l;
        } else if (!strcmp(f, "--question-end")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 30, &l)) return 2;
            a->qend = (int)l;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (see --help)", f);
        }
    }
    if (!a->model) return cli_fail(cmd, 2, "-m DIR is required");
    if (!a->questions) return cli_fail(cmd, 2, "--questions FILE is required");
    if (!a->out) return cli_fail(cmd, 2, "--out FILE is required");
    return 0;
}

/* One answered question, as rank 0 needs it: the record and what the progress line says. */
static json_t *answer_item(const mtb_args *a, const rmu_model *model, const rmu_tokenizer *tok, rmu_state *st,
                           const rmu_mtb_question *q, const rmu_mtb_opts *o, int index, rmu_err *e) {
    double tq = rmu_now_s();
    char **turns = NULL;
    rmu_mtb_turn_info info[64];
    rmu_mtb_turn_info *ip = q->nturns <= 64 ? info : NULL;
    if (rmu_mtb_answer(model, tok, st, q, o, &turns, ip, e)) {
        char *qid = json_dumps(q->qid, JSON_ENCODE_ANY);
        rmu_err_prefix(e, "question %s", qid ? qid : "?");
        free(qid);
        return NULL;
    }
    char aid[23];
    rmu_mtb_answer_id(a->model_id, q->qid, turns, q->nturns, aid);
    json_t *rec = rmu_mtb_record(q->qid, aid, a->model_id, turns, q->nturns, rmu_wall_s());
    rmu_mtb_turns_free(turns, q->nturns);
    int newtok = 0, errs = 0;
    for (int j = 0; ip && j < q->nturns; j++) {
        newtok += ip[j].new_tokens;
        errs += ip[j].error;
    }
    json_t *item = rec ? json_pack("{s:o, s:i, s:i, s:i, s:f}", "record", rec, "index", index, "new_tokens", newtok,
                                   "errors", errs, "seconds", rmu_now_s() - tq)
                       : NULL;
    if (!item) rmu_errf(e, "out of memory");
    return item;
}

/* Rank 0: one answered question into the answer file, and its progress line. */
static int record_item(const mtb_args *a, const rmu_mtb_questions *qs, json_t *answers, json_t *item, int done,
                       int todo, int *errors, rmu_err *e) {
    const rmu_mtb_question *q = &qs->q[json_integer_value(json_object_get(item, "index"))];
    int errs = (int)json_integer_value(json_object_get(item, "errors"));
    json_t *rec = json_incref(json_object_get(item, "record"));
    if (rmu_mtb_answers_put(answers, rec, e) || rmu_mtb_answers_save(a->out, answers, e)) return -1;
    *errors += errs;
    char *qid = json_dumps(q->qid, JSON_ENCODE_ANY);
    fprintf(stderr, "rmu mtbench: [%d/%d] question %s (%s, temp %g): %d turns, %d new tokens%s, %.1f s\n", done, todo,
            qid ? qid : "?", q->category, rmu_mtb_temperature(q->category), q->nturns,
            (int)json_integer_value(json_object_get(item, "new_tokens")),
            errs ? ", ERROR (prompt longer than --ctx)" : "", json_real_value(json_object_get(item, "seconds")));
    free(qid);
    return 0;
}

/* Several ranks: every rank's item of a round to rank 0 as JSON lines, in rank order. */
static int gather_items(const rmu_dist *d, json_t *mine, json_t **all, rmu_err *e) {
    char *line = mine ? rmu_json_dumps_line(mine, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL, *buf = NULL;
    size_t n = 0;
    int rc = rmu_dist_agree(d, mine && !line ? rmu_errf(e, "out of memory") : 0, e) ||
             rmu_dist_gather_bytes(d, line ? line : "", line ? strlen(line) : 0, &buf, &n, e);
    free(line);
    *all = NULL;
    if (rc || !buf) return rc ? -1 : 0;
    json_t *arr = json_array();
    for (char *p = buf, *nl; arr && (nl = strchr(p, '\n')); p = nl + 1) {
        *nl = 0;
        json_t *it = json_loads(p, 0, NULL);
        if (!it || json_array_append_new(arr, it)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(buf);
    if (!arr) return rmu_errf(e, "out of memory");
    *all = arr;
    return 0;
}

static int mtbench(const rmu_dist *d, int argc, char **argv) {
    const char *cmd = "mtbench";
    mtb_args a;
    /* every rank parses; a rank that cannot stops them all (its own message printed) */
    int rc = cli_dist_status(d, parse_args(cmd, argc, argv, &a));
    if (rc) return rc == 1 ? 0 : rc;
    rmu_err e;
    char idbuf[256];
    if (!a.model_id) { /* the folder's name, as FastChat users usually pass it */
        snprintf(idbuf, sizeof idbuf, "%s", a.model);
        size_t l = strlen(idbuf);
        while (l > 1 && idbuf[l - 1] == '/') idbuf[--l] = 0;
        const char *b = strrchr(idbuf, '/');
        a.model_id = b ? b + 1 : idbuf;
    }
    int root = rmu_dist_root(d), multi = d->size > 1;
    rmu_mtb_questions qs = {0};
    json_t *answers = NULL;
    rmu_model model;
    rmu_tokenizer *tok = NULL;
    rmu_state st;
    unsigned char *todo_flag = NULL;
    int *todo_idx = NULL, have_model = 0, have_state = 0;
    /* the questions on every rank; the answer file (what is left to do) on rank 0 */
    if (rmu_dist_agree(d, rmu_mtb_load_questions(&qs, a.questions, &e), &e)) {
        cli_dist_fail(d, cmd, 1, "%s", e.msg);
        rc = 1;
        goto out;
    }
    if (root && rmu_mtb_answers_load(a.out, &answers, &e)) {
        size_t n = strlen(e.msg);
        snprintf(e.msg + n, sizeof e.msg - n, " (not an answer file? refusing to overwrite it)");
        rc = 1;
    }
    uint64_t qhash = rmu_fnv1a(RMU_FNV_INIT, &qs.n, sizeof qs.n);
    for (int i = 0; i < qs.n; i++) {
        char *id = json_dumps(qs.q[i].qid, JSON_ENCODE_ANY);
        if (id) qhash = rmu_fnv1a(qhash, id, strlen(id) + 1);
        free(id);
    }
    if ((rc = rmu_dist_agree(d, rc, &e)) || (rc = rmu_dist_same(d, qhash, "questions", &e) ? 1 : 0)) {
        cli_dist_fail(d, cmd, 1, "%s", e.msg);
        rc = 1;
        goto out;
    }
    rc = 1;
    int qend = a.qend < 0 || a.qend > qs.n ? qs.n : a.qend, qbegin = a.qbegin < qend ? a.qbegin : qend;
    todo_flag = calloc((size_t)(qs.n ? qs.n : 1), 1);
    todo_idx = malloc(sizeof(int) * (size_t)(qs.n ? qs.n : 1));
    if (!todo_flag || !todo_idx) {
        cli_fail(cmd, 1, "out of memory");
        goto out;
    }
    for (int i = qbegin; root && i < qend; i++) todo_flag[i] = rmu_mtb_answers_find(answers, qs.q[i].qid) < 0;
    if (rmu_dist_bcast(d, todo_flag, (size_t)qs.n, &e)) {
        cli_dist_fail(d, cmd, 1, "%s", e.msg);
        goto out;
    }
    int todo = 0, skipped = 0;
    for (int i = qbegin; i < qend; i++) {
        if (todo_flag[i]) todo_idx[todo++] = i;
        else skipped++;
    }
    int lrc = 0;
    if (todo) { /* questions are split over ranks: a rank without any still loads (rounds are collective) */
        if (rmu_model_load(&model, a.model, &e)) lrc = 1;
        have_model = !lrc;
        if (have_model && root) cli_model_note(cmd, &model.cfg);
        if (!lrc && (!(tok = rmu_tok_load(a.model, &e)) || rmu_check_tokenizer(&model, tok, &e))) lrc = 1;
        int ctx = a.ctx;
        if (!lrc && !ctx) {
            ctx = model.cfg.max_position_embeddings > 0 ? model.cfg.max_position_embeddings : 4096;
            if (ctx > 4096) ctx = 4096;
        }
        if (!lrc && rmu_state_init(&st, &model, ctx, ctx < 512 ? ctx : 512, &e)) lrc = 1;
        have_state = !lrc;
    }
    if (rmu_dist_agree(d, lrc, &e)) {
        cli_dist_fail(d, cmd, 1, "%s", e.msg);
        goto out;
    }
    rmu_mtb_opts o = {.max_new = a.max_new, .kind = (rmu_chat_kind)rmu_chat_kind_parse(a.template_name), .seed = a.seed};
    int done = 0, errors = 0;
    double t0 = rmu_now_s();
    /* rounds of one question per rank; after each, rank 0 records them (resumable) */
    for (int base = 0; base < todo; base += d->size) {
        int j = base + d->rank, arc = 0;
        json_t *mine = j < todo ? answer_item(&a, &model, tok, &st, &qs.q[todo_idx[j]], &o, todo_idx[j], &e) : NULL;
        if (j < todo && !mine) arc = -1;
        json_t *all = NULL;
        if (!multi) {
            all = mine ? json_pack("[o]", mine) : NULL;
        } else if (gather_items(d, mine, &all, &e)) {
            json_decref(mine);
            cli_dist_fail(d, cmd, 1, "%s", e.msg);
            goto out;
        } else {
            json_decref(mine);
        }
        rmu_err we;
        int wrc = 0;
        for (size_t i = 0; root && all && i < json_array_size(all) && !wrc; i++)
            wrc = record_item(&a, &qs, answers, json_array_get(all, i), ++done, todo, &errors, &we);
        json_decref(all);
        /* a failed answer is reported before a failed write: it happened first */
        if (!arc && wrc) {
            arc = wrc;
            e = we;
        }
        if (rmu_dist_agree(d, arc, &e)) {
            cli_dist_fail(d, cmd, 1, "%s", e.msg);
            goto out;
        }
    }
    if (root) {
        fprintf(stderr, "rmu mtbench: %d answered, %d already in %s, %d turns answered ERROR; %.1f s\n", done, skipped,
                a.out, errors, rmu_now_s() - t0);
        if (!done && !rmu_file_exists(a.out) && rmu_mtb_answers_save(a.out, answers, &e)) lrc = 1;
    }
    if (rmu_dist_agree(d, lrc, &e)) {
        cli_dist_fail(d, cmd, 1, "%s", e.msg);
        goto out;
    }
    rc = 0;
out:
    if (have_state) rmu_state_free(&st);
    rmu_tok_free(tok);
    if (have_model) rmu_model_free(&model);
    json_decref(answers);
    free(todo_flag);
    free(todo_idx);
    rmu_mtb_questions_free(&qs);
    return rc;
}

int rmu_cmd_mtbench(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "judge")) return rmu_cmd_mtbench_judge(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "show")) return rmu_cmd_mtbench_show(argc - 1, argv + 1);
    rmu_dist d;
    if (cli_dist_begin(&d, "mtbench")) return 1;
    return cli_dist_end(&d, mtbench(&d, argc, argv));
}
