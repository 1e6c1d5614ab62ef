/* check.c - model consistency checks (see check.h). */
#include "model/check.h"

#include "model/model.h"
#include "tokenizer/tokenizer.h"

int rmu_check_tokenizer(const rmu_model *m, const rmu_tokenizer *t, rmu_err *e) {
    int tv = rmu_tok_vocab_size(t);
    if (tv > m->cfg.vocab_size)
        return rmu_errf(e, "%s: tokenizer has %d pieces but config.json vocab_size is %d", m->dir, tv,
                        m->cfg.vocab_size);
    return 0;
}
