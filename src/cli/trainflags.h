/* trainflags.h - the fine-tuning flags `rmu train` and `rmu attack relearn` share (model,
 * data, output, schedule, optimizer, checkpoints, log, precision), parsed into one
 * rmu_ft_opts, so the two commands cannot drift apart in names, ranges or meaning. */
#ifndef RMU_CLI_TRAINFLAGS_H
#define RMU_CLI_TRAINFLAGS_H

#include "train/finetune.h"

/* argv[*i] as one of the shared flags: 1 when it was one (its value consumed, *i advanced),
 * 0 when it is not one of them, -1 after a usage error (printed). *have_epochs is set when
 * --epochs was given (--steps and --epochs exclude each other: the caller checks). */
int cli_ft_flag(const char *cmd, int argc, char **argv, int *i, rmu_ft_opts *o, int *have_epochs);

#endif
