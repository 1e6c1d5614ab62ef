/* cmd_logits.c - `rmu logits`: raw logits or hidden states for given ids (what the numeric
 * tests compare against the PyTorch oracle). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/fileio.h"
#include "model/model.h"

int rmu_cmd_logits(int argc, char **argv) {
    const char *cmd = "logits", *dir = NULL, *ids_s = NULL, *out = NULL, *hout = NULL, *mode = "prefill", *v;
    const char *prec_s = NULL;
    long layer = -1, batch = 512;
    rmu_prec prec;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-m")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--ids")) {
            if (!(ids_s = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--mode")) {
            if (!(mode = cli_value(cmd, argc, argv, &i))) return 2;
            if (strcmp(mode, "prefill") && strcmp(mode, "decode"))
                return cli_fail(cmd, 2, "--mode: expected prefill or decode, got '%s'", mode);
        } else if (!strcmp(f, "--batch")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 1, 1 << 16, &batch)) return 2;
        } else if (!strcmp(f, "--hidden-layer")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || cli_int(cmd, f, v, 0, 1 << 16, &layer)) return 2;
        } else if (!strcmp(f, "--hidden-out")) {
            if (!(hout = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--precision")) {
            if (!(prec_s = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            puts("usage: rmu logits -m DIR --ids \"1 2 3\" --out FILE.f32 [--mode prefill|decode] [--batch N]\n"
                 "                  [--hidden-layer L --hidden-out FILE.f32] [--precision auto|bf16|fp32]\n"
                 "writes float32 logits [n, vocab] (and the residual stream after layer L [n, hidden])");
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s'", f);
        }
    }
    if (!dir || !ids_s || !out) return cli_fail(cmd, 2, "-m DIR, --ids and --out are required");
    if (cli_precision(cmd, prec_s, &prec)) return 2;
    if ((layer >= 0) != (hout != NULL)) return cli_fail(cmd, 2, "--hidden-layer and --hidden-out go together");
    int *ids, n, rc = 1;
    if (cli_parse_ids(cmd, "--ids", ids_s, &ids, &n)) return 2;
    if (n == 0) { free(ids); return cli_fail(cmd, 2, "--ids: no ids"); }
    rmu_model m;
    rmu_state s;
    rmu_err e;
    if (rmu_model_load(&m, dir, &e)) { free(ids); return cli_fail(cmd, 1, "%s", e.msg); }
    cli_model_note(cmd, &m.cfg);
    rmu_model_set_precision(&m, prec);
    size_t V = m.cfg.vocab_size, C = m.cfg.hidden_size;
    float *lg = malloc(sizeof(float) * V * n), *hid = NULL;
    if (!lg || rmu_state_init(&s, &m, n, (int)batch, &e)) {
        rc = cli_fail(cmd, 1, "%s", lg ? e.msg : "out of memory");
        free(lg), free(ids), rmu_model_free(&m);
        return rc;
    }
    if (!strcmp(mode, "prefill")) {
        if (rmu_model_forward(&m, &s, ids, n, lg, 1, &e)) goto fail;
    } else {
        for (int i = 0; i < n; i++)
            if (rmu_model_forward(&m, &s, ids + i, 1, lg + i * V, 0, &e)) goto fail;
    }
    if (rmu_file_write_atomic(out, lg, sizeof(float) * V * n, &e)) goto fail;
    if (hout) {
        if (!(hid = malloc(sizeof(float) * C * n))) { strcpy(e.msg, "out of memory"); goto fail; }
        if (rmu_model_hidden(&m, &s, ids, n, (int)layer, hid, &e)) goto fail;
        if (rmu_file_write_atomic(hout, hid, sizeof(float) * C * n, &e)) goto fail;
    }
    rc = 0;
    goto done;
fail:
    rc = cli_fail(cmd, 1, "%s", e.msg);
done:
    free(hid), free(lg), free(ids);
    rmu_state_free(&s);
    rmu_model_free(&m);
    return rc;
}
