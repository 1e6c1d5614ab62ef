/* cmd_tokenize.c - `rmu tokenize`: text to token ids (or ids to text with --decode).
 *
 * Input is stdin, one item per line. A line ends at '\n' or "\r\n" (CRLF files such as the
 * wikitext-2 raw files are common, and a trailing CR is never meant as text); any other '\r'
 * is text and is tokenized. An empty line prints just the BOS id (an empty line with
 * --no-bos). With -0 / --null, items are separated by NUL bytes instead and nothing else
 * is removed, so an item is tokenized byte for byte and may contain newlines or CRs; the
 * output is still one line of ids per item. With --decode each input line holds ids
 * (spaces or commas) and the output is the decoded text of each, newline-terminated
 * (NUL-terminated with -0, since decoded text may hold newlines), so
 * `rmu tokenize -0 | rmu tokenize --decode --skip-special -0` gives the input back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/err.h"
#include "tokenizer/tokenizer.h"

static const char *USAGE =
    "usage: rmu tokenize (-m DIR | --tokenizer FILE [--config FILE]) [--no-bos] [-0] [--decode [--skip-special]]\n"
    "  reads stdin, one text per line (LF or CRLF), and prints the token ids of each line\n"
    "  -m DIR            model folder with tokenizer.json (+ tokenizer_config.json)\n"
    "  --tokenizer FILE  an explicit tokenizer.json (config defaults: BOS <s>, add_bos_token true)\n"
    "  --config FILE     tokenizer_config.json to use with --tokenizer\n"
    "  --no-bos          no special tokens (no BOS, no EOS even if add_eos_token)\n"
    "  -0, --null        items are separated by NUL bytes instead of newlines (taken byte for byte)\n"
    "  --decode          input lines are ids; print the decoded text of each (NUL-terminated with -0)\n"
    "  --skip-special    with --decode: drop special tokens (<s>, </s>) as skip_special_tokens\n";

/* ids as text, without stdio per-number overhead (wikitext is ~330k ids) */
static void put_ids(const int *ids, int n, FILE *f) {
    char buf[16];
    for (int i = 0; i < n; i++) {
        int k = sizeof buf;
        unsigned v = (unsigned)ids[i];
        do buf[--k] = (char)('0' + v % 10); while (v /= 10);
        if (i) putc_unlocked(' ', f);
        fwrite(buf + k, 1, sizeof buf - (size_t)k, f);
    }
    putc_unlocked('\n', f);
}

int rmu_cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *dir = NULL, *tok = NULL, *cfg = NULL;
    int no_bos = 0, decode = 0, skip_special = 0, nul = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--tokenizer")) {
            if (!(tok = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--config")) {
            if (!(cfg = cli_value(cmd, argc, argv, &i))) return 2;
        } else if (!strcmp(f, "--no-bos")) {
            no_bos = 1;
        } else if (!strcmp(f, "--decode")) {
            decode = 1;
        } else if (!strcmp(f, "--skip-special")) {
            skip_special = 1;
        } else if (!strcmp(f, "-0") || !strcmp(f, "--null")) {
            nul = 1;
        } else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            return cli_fail(cmd, 2, "unknown option '%s' (rmu tokenize --help lists them)", f);
        }
    }
    if (!dir == !tok) return cli_fail(cmd, 2, "give exactly one of -m DIR or --tokenizer FILE");
    if (cfg && !tok) return cli_fail(cmd, 2, "--config goes with --tokenizer (-m DIR reads DIR/tokenizer_config.json)");
    if (skip_special && !decode) return cli_fail(cmd, 2, "--skip-special only applies to --decode");

    rmu_err e;
    rmu_tokenizer *t = dir ? rmu_tok_load(dir, &e) : rmu_tok_load_files(tok, cfg, &e);
    if (!t) return cli_fail(cmd, 1, "%s", e.msg);
    int eos = !no_bos && rmu_tok_add_eos(t) ? rmu_tok_eos_id(t) : -1;
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    /* ids never contain NUL: --decode always reads lines; -0 then only changes the output */
    const int delim = nul && !decode ? '\0' : '\n';
    while ((got = cli_read_line(stdin, delim, CLI_MAX_LINE, &line, &cap)) != -1) {
        lineno++;
        if (got == -2) {
            rc = cli_fail(cmd, 1, "input line %ld: longer than %zu MiB, the limit for one text", lineno, CLI_MAX_LINE >> 20);
            break;
        }
        size_t len = (size_t)got;
        if (delim == '\n' && len && line[len - 1] == '\r') len--;
        int *ids = NULL, n = 0;
        if (decode) {
            line[len] = 0;
            char flag[48];
            snprintf(flag, sizeof flag, "input line %ld", lineno);
            if (cli_parse_ids(cmd, flag, line, &ids, &n)) {
                rc = 1;
                break;
            }
            char *text = rmu_tok_decode(t, ids, n, skip_special, &e);
            free(ids);
            if (!text) {
                rc = cli_fail(cmd, 1, "input line %ld: %s", lineno, e.msg);
                break;
            }
            fputs(text, stdout);
            putchar(nul ? '\0' : '\n');
            free(text);
            continue;
        }
        if (rmu_tok_encode(t, line, len, !no_bos && rmu_tok_add_bos(t), &ids, &n, &e)) {
            rc = cli_fail(cmd, 1, "input line %ld: %s", lineno, e.msg);
            break;
        }
        if (eos >= 0) { /* HF add_special_tokens with add_eos_token; ids has room: realloc once */
            int *grown = realloc(ids, sizeof(int) * (size_t)(n + 1));
            if (!grown) {
                free(ids);
                rc = cli_fail(cmd, 1, "out of memory");
                break;
            }
            ids = grown;
            ids[n++] = eos;
        }
        put_ids(ids, n, stdout);
        free(ids);
    }
    free(line);
    if (!rc && ferror(stdin)) rc = cli_fail(cmd, 1, "reading stdin failed");
    if (fflush(stdout) || ferror(stdout)) {
        if (!rc) rc = cli_fail(cmd, 1, "writing stdout failed");
    }
    rmu_tok_free(t);
    return rc;
}
