/* fuzz_csv.c - libFuzzer entry for MMLU's CSV files: the RFC 4180 reader (quotes, "" escapes,
 * embedded newlines, CRLF) and the MMLU rows on top of it (question, four choices, an answer
 * letter). Each must fail with a message naming the file and line, or give rows whose fields
 * are strings and whose answer is one of the choices; the record lines never go backwards.
 * `make fuzz`, then build-fuzz/fuzz_csv [corpus dir]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/mcq.h"

static int row(void *ud, char **fields, int nfields, int line, rmu_err *e) {
    int *last = ud;
    if (nfields < 1 || line < *last) abort();
    for (int i = 0; i < nfields; i++)
        if (!fields[i]) abort();
    *last = line;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    rmu_err e;
    e.msg[0] = 0;
    int last = 0;
    if (rmu_csv_parse(text, size, "subject_test.csv", row, &last, &e) != 0 &&
        (!e.msg[0] || !strstr(e.msg, "subject_test.csv")))
        abort();
    rmu_mcq_set s = {0};
    e.msg[0] = 0;
    if (rmu_mcq_parse_csv(&s, text, size, "subject_test.csv", &e) == 0) {
        for (int i = 0; i < s.n; i++) {
            const rmu_mcq_item *it = &s.items[i];
            if (!it->question || it->nchoices < 1 || it->answer < 0 || it->answer >= it->nchoices) abort();
            for (int c = 0; c < it->nchoices; c++)
                if (!it->choices[c]) abort();
        }
    } else if (!e.msg[0] || !memchr(e.msg, 0, sizeof e.msg)) {
        abort();
    }
    rmu_mcq_set_free(&s);
    return 0;
}
