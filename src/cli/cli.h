/* cli.h - the `rmu` subcommands and small argument helpers shared by them.
 * Diagnostics go to stderr as one line "rmu CMD: message"; results go to stdout. */
#ifndef RMU_CLI_H
#define RMU_CLI_H

#include <stdarg.h>
#include <stdio.h>

#include "kernels/gemm.h"
#include "model/config.h"

/* Each command: returns the process exit status (0 ok, 1 runtime error, 2 usage error). */
int rmu_cmd_generate(int argc, char **argv);
int rmu_cmd_chat(int argc, char **argv);
int rmu_cmd_tokenize(int argc, char **argv);
int rmu_cmd_info(int argc, char **argv);
int rmu_cmd_bench(int argc, char **argv);
int rmu_cmd_init(int argc, char **argv);

int rmu_cmd_logits(int argc, char **argv);
int rmu_cmd_train(int argc, char **argv);
int rmu_cmd_unlearn(int argc, char **argv);
int rmu_cmd_attack(int argc, char **argv);          /* rmu attack relearn|ablate */
int rmu_cmd_eval(int argc, char **argv);
int rmu_cmd_mtbench(int argc, char **argv);
int rmu_cmd_mtbench_judge(int argc, char **argv); /* rmu mtbench judge */
int rmu_cmd_mtbench_show(int argc, char **argv);  /* rmu mtbench show */
int rmu_cmd_demo(int argc, char **argv);
int rmu_cmd_export(int argc, char **argv);
int rmu_cmd_quantize(int argc, char **argv);
int rmu_cmd_serve(int argc, char **argv);

/* Print "rmu CMD: message" on stderr and return status. */
int cli_fail(const char *cmd, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int cli_vfail(const char *cmd, int status, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Strict numeric parsing of a flag's value: whole string, in range; on failure prints
 * "rmu CMD: FLAG: expected ..." and returns -1. */
int cli_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out);
int cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out);
/* Takes the value of the flag at argv[*i] (advancing *i); prints a usage error when missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* --precision auto|bf16|fp32 (the matmuls' arithmetic, kernels/gemm.h): the flag's value, or
 * val NULL for the default - the environment variable RMU_PRECISION when set, else auto.
 * A bad value prints a usage error and returns -1. */
int cli_precision(const char *cmd, const char *val, rmu_prec *out);

/* After loading a model: what the loader ignores of its quantization_config (FP8 static
 * input scales: weight-only), as "rmu CMD: note: ..." on stderr; nothing when nothing. */
void cli_model_note(const char *cmd, const rmu_config *c);

/* One text read from stdin (a chat turn, a line to tokenize) is at most this long. */
#define CLI_MAX_LINE ((size_t)16 << 20)
/* One record of f up to delim (dropped) into *buf (grown as getdelim does, NUL-terminated):
 * its length, -1 at the end of input, -2 when it is longer than max bytes - then the rest
 * of it is read and dropped, so memory stays at max whatever the input. */
long cli_read_line(FILE *f, int delim, size_t max, char **buf, size_t *cap);

/* Parse "1 2 3" (spaces/commas) into a malloc'd id array. */
int cli_parse_ids(const char *cmd, const char *flag, const char *s, int **ids, int *n);

#endif
