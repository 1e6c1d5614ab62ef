/* fuzz_jsonl.c - libFuzzer entry for the readers of JSON rows. The first byte picks the
 * reader, the rest is the file's bytes: 0-2 the corpus reader (src/train/data.h) as a .jsonl,
 * .json (array or JSON Lines) or plain-text file; 3 multiple-choice rows (rmu_mcq_parse_json,
 * WMDP/MMLU as JSON Lines or an array); 4 the JSON Lines iterator itself, torn last line
 * allowed. Each must fail with a message or give what its callers rely on: documents
 * non-empty and NUL-terminated at their length, MCQ rows with 2..26 choices and the answer
 * among them, every line seen once. `make fuzz`, then build-fuzz/fuzz_jsonl [corpus dir]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "eval/mcq.h"
#include "train/data.h"

static int count_line(void *ud, json_t *v, long line, rmu_err *e) {
    long *last = ud;
    if (!v || line <= *last) abort(); /* lines come once, in order */
    *last = line;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 5;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    rmu_err e;
    e.msg[0] = 0;
    int rc;
    if (mode <= 2) {
        static const char *const names[] = {"corpus.jsonl", "corpus.json", "corpus.txt"};
        rmu_data_docs d = {0};
        rc = rmu_data_parse(&d, names[mode], text, n, NULL, &e);
        if (rc == 0) {
            if (d.n == 0) abort();
            for (size_t i = 0; i < d.n; i++)
                if (!d.len[i] || d.text[i][d.len[i]] != 0 || d.len[i] > RMU_DATA_MAX_TEXT) abort();
        } else if (d.n) {
            abort(); /* an error keeps nothing of the file */
        }
        rmu_data_docs_free(&d);
    } else if (mode == 3) {
        rmu_mcq_set s = {0};
        rc = rmu_mcq_parse_json(&s, text, n, "rows.jsonl", 2, RMU_MCQ_MAX_CHOICES, &e);
        for (int i = 0; rc == 0 && i < s.n; i++) {
            const rmu_mcq_item *it = &s.items[i];
            if (!it->question || it->nchoices < 2 || it->nchoices > RMU_MCQ_MAX_CHOICES) abort();
            if (it->answer < 0 || it->answer >= it->nchoices) abort();
            for (int c = 0; c < it->nchoices; c++)
                if (!it->choices[c]) abort();
        }
        rmu_mcq_set_free(&s);
    } else {
        long last = 0;
        rc = rmu_jsonl_parse("rows.jsonl", text, n, RMU_JSONL_TORN_TAIL_OK, count_line, &last, &e);
    }
    if (rc != 0 && (!e.msg[0] || !memchr(e.msg, 0, sizeof e.msg))) abort(); /* every failure explains itself */
    return 0;
}
