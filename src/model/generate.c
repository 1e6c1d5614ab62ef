#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

size_t rmu_gen_held_back(const char *text, size_t n, const char *const *stops, int nstops) {
    size_t hold = 0;
    for (int i = 0; i < nstops; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--)
            if (k <= n && !memcmp(text + n - k, stops[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

int rmu_gen_run(const rmu_model *m, const rmu_tokenizer *t, rmu_state *s, rmu_sampler *smp, const int *prompt,
                int n_prompt, const rmu_gen_opts *o, rmu_gen_result *r, rmu_err *e) {
    memset(r, 0, sizeof *r);
    if (n_prompt <= 0) return rmu_errf(e, "empty prompt");
    if (s->pos + n_prompt >= s->ctx)
        return rmu_errf(e, "prompt of %d tokens does not fit the context of %d tokens (%d already used)",
                        n_prompt, s->ctx, s->pos);
    int V = m->cfg.vocab_size, eos = rmu_tok_eos_id(t);
    float *logits = malloc(sizeof(float) * V);
    r->ids = malloc(sizeof(int) * (o->max_new > 0 ? o->max_new : 1));
    rmu_sb text = {0};
    size_t emitted = 0;
    rmu_tok_stream st;
    rmu_tok_stream_init(&st, t);
    if (o->continuation) st.started = 1;
    if (!logits || !r->ids) {
        free(logits);
        return rmu_errf(e, "out of memory");
    }
    if (rmu_model_forward(m, s, prompt, n_prompt, logits, 0, e)) goto fail;
    r->stop_reason = 0;
    for (int i = 0; i < o->max_new; i++) {
        int id = rmu_sampler_next(smp, logits);
        if (id == eos) {
            r->stop_reason = 1;
            break;
        }
        r->ids[r->n++] = id;
        char piece[256];
        int np = rmu_tok_stream_push(&st, id, piece, sizeof piece);
        if (rmu_sb_add(&text, piece, np)) { rmu_errf(e, "out of memory"); goto fail; }
        /* stop strings: search the new tail of the text */
        int stopped = 0;
        for (int k = 0; k < o->nstops && !stopped; k++) {
            /* only a match that ends in the new piece is new */
            size_t sl = strlen(o->stops[k]), from = text.n - np > sl ? text.n - np - sl : 0;
            const char *hit = strstr(text.p + from, o->stops[k]);
            if (hit) {
                text.n = hit - text.p;
                text.p[text.n] = 0;
                stopped = 1;
            }
        }
        size_t hold = stopped ? 0 : rmu_gen_held_back(text.p, text.n, o->stops, o->nstops);
        if (o->cb && text.n - hold > emitted) {
            char save = text.p[text.n - hold];
            text.p[text.n - hold] = 0;
            int stop_cb = o->cb(o->ud, text.p + emitted);
            text.p[text.n - hold] = save;
            emitted = text.n - hold;
            if (stop_cb) { r->stop_reason = 3; break; }
        }
        if (stopped) { r->stop_reason = 2; break; }
        if (s->pos >= s->ctx) break; /* context full: stop as at the length limit */
        if (i + 1 < o->max_new && rmu_model_forward(m, s, &id, 1, logits, 0, e)) goto fail;
    }
    if (r->stop_reason != 2) {
        char tail[64];
        int nt = rmu_tok_stream_flush(&st, tail, sizeof tail);
        if (rmu_sb_add(&text, tail, nt)) { rmu_errf(e, "out of memory"); goto fail; }
    }
    if (o->cb && text.n > emitted) o->cb(o->ud, text.p + emitted);
    if (!text.p && rmu_sb_add(&text, "", 0)) { rmu_errf(e, "out of memory"); goto fail; }
    r->text = text.p;
    free(logits);
    return 0;
fail:
    free(logits);
    free(text.p);
    rmu_gen_result_free(r);
    return -1;
}

void rmu_gen_result_free(rmu_gen_result *r) {
    free(r->text);
    free(r->ids);
    memset(r, 0, sizeof *r);
}
