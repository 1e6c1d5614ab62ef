/* mtbench_gen.c - answering one MT-Bench question with the model (FastChat's
 * get_model_answers loop over turns). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "eval/mtbench.h"
#include "model/generate.h"
#include "model/sampler.h"

/* The special tokens' text, removed from answers as FastChat removes special_tokens_map
 * values (bos, eos, unk, pad). */
static int special_strings(const rmu_tokenizer *t, const char ***out) {
    int V = rmu_tok_vocab_size(t), n = 0;
    const char **s = malloc(sizeof(char *) * (size_t)(V > 0 ? V : 1));
    if (!s) return -1;
    for (int id = 0; id < V; id++)
        if (rmu_tok_is_special(t, id) && rmu_tok_piece(t, id)) s[n++] = rmu_tok_piece(t, id);
    *out = s;
    return n;
}

int rmu_mtb_answer(const rmu_model *m, const rmu_tokenizer *t, rmu_state *s, const rmu_mtb_question *q,
                   const rmu_mtb_opts *o, char ***turns_out, rmu_mtb_turn_info *info, rmu_err *e) {
    int nt = q->nturns, rc = 0;
    double temp = rmu_mtb_temperature(q->category);
    rmu_sampler_cfg scfg = {
        .temp = temp < 1e-4 ? 0.0f : (float)temp, /* FastChat: do_sample=False below 1e-4 */
        .top_k = temp < 1e-4 ? 0 : 50,            /* HF generate defaults when sampling */
        .top_p = 1.0f,
        .seed = rmu_mtb_seed(o->seed, q->qid),
    };
    rmu_sampler smp;
    char **answers = calloc((size_t)nt, sizeof(char *));
    rmu_chat_msg *msgs = calloc((size_t)(2 * nt), sizeof *msgs);
    int *cached = malloc(sizeof(int) * (size_t)(s->ctx + 1)); /* tokens in s's cache */
    const char **specials = NULL;
    int nspec = special_strings(t, &specials);
    if (!answers || !msgs || !cached || nspec < 0) {
        free(answers);
        free(msgs);
        free(cached);
        free(specials);
        return rmu_errf(e, "out of memory");
    }
    if (rmu_sampler_init(&smp, m->cfg.vocab_size, &scfg, e)) {
        free(answers);
        free(msgs);
        free(cached);
        free(specials);
        return -1;
    }
    rmu_state_reset(s);
    int ncached = 0, nm = 0;
    for (int j = 0; j < nt && !rc; j++) {
        msgs[nm++] = (rmu_chat_msg){"user", q->turns[j]};
        char *prompt = rmu_chat_render(t, o->kind, msgs, nm, 1, e);
        int *ids = NULL, n = 0;
        if (!prompt || rmu_chat_encode(t, prompt, &ids, &n, e)) {
            free(prompt);
            rc = -1;
            break;
        }
        free(prompt);
        if (info) info[j] = (rmu_mtb_turn_info){.prompt_tokens = n};
        if (n >= s->ctx || n == 0) { /* FastChat answers "ERROR" when generation fails */
            answers[j] = strdup("ERROR");
            if (info) info[j].error = 1;
        } else {
            /* the cache holds the previous turn's prompt and answer: keep the shared prefix */
            int lcp = 0, lim = ncached < n - 1 ? ncached : n - 1;
            while (lcp < lim && cached[lcp] == ids[lcp]) lcp++;
            s->pos = lcp;
            rmu_gen_opts go = {.max_new = o->max_new};
            rmu_gen_result r;
            if (rmu_gen_run(m, t, s, &smp, ids + lcp, n - lcp, &go, &r, e)) {
                free(ids);
                rc = -1;
                break;
            }
            memcpy(cached, ids, sizeof(int) * (size_t)n);
            ncached = n;
            for (int i = 0; i < r.n && ncached < s->pos; i++) cached[ncached++] = r.ids[i];
            if (ncached > s->pos) ncached = s->pos;
            answers[j] = rmu_mtb_clean(r.text, specials, nspec);
            if (info) info[j].new_tokens = r.n;
            rmu_gen_result_free(&r);
        }
        free(ids);
        if (!answers[j]) {
            rc = rmu_errf(e, "out of memory");
            break;
        }
        msgs[nm++] = (rmu_chat_msg){"assistant", answers[j]};
    }
    rmu_sampler_free(&smp);
    free(msgs);
    free(cached);
    free(specials);
    if (rc) {
        rmu_mtb_turns_free(answers, nt);
        return -1;
    }
    *turns_out = answers;
    return 0;
}
