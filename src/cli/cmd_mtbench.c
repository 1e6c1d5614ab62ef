/* cmd_mtbench.c - `rmu mtbench`: MT-Bench answers in FastChat's model-answer format,
 * resumable (see src/eval/mtbench.h for the generation rules). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/fileio.h"
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

int rmu_cmd_mtbench(int argc, char **argv) {
    const char *cmd = "mtbench";
    if (argc > 1 && !strcmp(argv[1], "judge")) return rmu_cmd_mtbench_judge(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "show")) return rmu_cmd_mtbench_show(argc - 1, argv + 1);
    mtb_args a;
    int rc = parse_args(cmd, argc, argv, &a);
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
    rmu_mtb_questions qs;
    if (rmu_mtb_load_questions(&qs, a.questions, &e)) return cli_fail(cmd, 1, "%s", e.msg);
    json_t *answers;
    if (rmu_mtb_answers_load(a.out, &answers, &e)) {
        rmu_mtb_questions_free(&qs);
        return cli_fail(cmd, 1, "%s (not an answer file? refusing to overwrite it)", e.msg);
    }
    int qend = a.qend < 0 || a.qend > qs.n ? qs.n : a.qend, qbegin = a.qbegin < qend ? a.qbegin : qend;
    int todo = 0;
    for (int i = qbegin; i < qend; i++) todo += rmu_mtb_answers_find(answers, qs.q[i].qid) < 0;
    rmu_model model;
    rmu_tokenizer *tok = NULL;
    rmu_state st;
    int have_model = 0, have_state = 0;
    rc = 1;
    if (todo) {
        if (rmu_model_load(&model, a.model, &e)) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
        cli_model_note(cmd, &model.cfg);
        have_model = 1;
        if (!(tok = rmu_tok_load(a.model, &e))) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
        if (rmu_check_tokenizer(&model, tok, &e)) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
        int ctx = a.ctx;
        if (!ctx) {
            ctx = model.cfg.max_position_embeddings > 0 ? model.cfg.max_position_embeddings : 4096;
            if (ctx > 4096) ctx = 4096;
        }
        if (rmu_state_init(&st, &model, ctx, ctx < 512 ? ctx : 512, &e)) {
            cli_fail(cmd, 1, "%s", e.msg);
            goto out;
        }
        have_state = 1;
    }
    rmu_mtb_opts o = {.max_new = a.max_new, .kind = (rmu_chat_kind)rmu_chat_kind_parse(a.template_name), .seed = a.seed};
    int done = 0, skipped = 0, errors = 0;
    double t0 = rmu_now_s();
    for (int i = qbegin; i < qend; i++) {
        const rmu_mtb_question *q = &qs.q[i];
        if (rmu_mtb_answers_find(answers, q->qid) >= 0) {
            skipped++;
            continue;
        }
        double tq = rmu_now_s();
        char **turns = NULL;
        rmu_mtb_turn_info info[64];
        rmu_mtb_turn_info *ip = q->nturns <= 64 ? info : NULL;
        char *qid = json_dumps(q->qid, JSON_ENCODE_ANY);
        if (rmu_mtb_answer(&model, tok, &st, q, &o, &turns, ip, &e)) {
            cli_fail(cmd, 1, "question %s: %s", qid ? qid : "?", e.msg);
            free(qid);
            goto out;
        }
        char aid[23];
        rmu_mtb_answer_id(a.model_id, q->qid, turns, q->nturns, aid);
        json_t *rec = rmu_mtb_record(q->qid, aid, a.model_id, turns, q->nturns, rmu_wall_s());
        int newtok = 0, errs = 0;
        for (int j = 0; ip && j < q->nturns; j++) {
            newtok += ip[j].new_tokens;
            errs += ip[j].error;
        }
        errors += errs;
        rmu_mtb_turns_free(turns, q->nturns);
        if (!rec || rmu_mtb_answers_put(answers, rec, &e) || rmu_mtb_answers_save(a.out, answers, &e)) {
            cli_fail(cmd, 1, "%s", rec ? e.msg : "out of memory");
            free(qid);
            goto out;
        }
        done++;
        double dt = rmu_now_s() - tq;
        fprintf(stderr, "rmu mtbench: [%d/%d] question %s (%s, temp %g): %d turns, %d new tokens%s, %.1f s\n", done, todo,
                qid ? qid : "?", q->category, rmu_mtb_temperature(q->category), q->nturns, newtok,
                errs ? ", ERROR (prompt longer than --ctx)" : "", dt);
        free(qid);
    }
    fprintf(stderr, "rmu mtbench: %d answered, %d already in %s, %d turns answered ERROR; %.1f s\n", done, skipped, a.out,
            errors, rmu_now_s() - t0);
    if (!done && !rmu_file_exists(a.out) && rmu_mtb_answers_save(a.out, answers, &e)) {
        cli_fail(cmd, 1, "%s", e.msg);
        goto out;
    }
    rc = 0;
out:
    if (have_state) rmu_state_free(&st);
    rmu_tok_free(tok);
    if (have_model) rmu_model_free(&model);
    json_decref(answers);
    rmu_mtb_questions_free(&qs);
    return rc;
}
