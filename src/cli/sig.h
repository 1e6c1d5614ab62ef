/* sig.h - Ctrl-C and SIGTERM for the commands that write outputs: stop within a second (or at
 * the end of the step in progress), leave no staging output, say whether and how the run can
 * be resumed, exit 130 (SIGINT) or 143 (SIGTERM).
 *
 * How: a handler records the first signal in a flag (volatile sig_atomic_t) that the library's
 * run APIs read through their opts.cancel (train and unlearn stop between steps, the folder
 * writer between chunks, each cleaning up through its normal error path). A watchdog thread
 * enforces the deadline for everything else (a long step, evaluation, export): 0.5 s after the
 * first signal, or at once on a second one, it removes this process's staging output (the
 * PID-named names hfdir and rmu_afile use, the loose files of a train work folder, our lock
 * file), prints the message and _exits. Killing at any moment is safe (the writers are crash
 * consistent); the cleanup only saves the next run from doing it. */
#ifndef RMU_CLI_SIG_H
#define RMU_CLI_SIG_H

#include <signal.h>

/* Installs the handlers when argv's command writes outputs (argv[1] is the command) and
 * records those outputs from its flags. Other commands keep the default signal behaviour. */
void cli_sig_setup(int argc, char **argv);
/* The flag for opts.cancel: the signal number once one came, else 0. */
const volatile sig_atomic_t *cli_sig_flag(void);
/* The signal caught (SIGINT or SIGTERM), or 0. */
int cli_sig_caught(void);
/* cli_fail printed the command's error: a signal that comes after it (mpirun stopping the
 * other ranks of a failed job) adds no second line. */
void cli_sig_error_said(void);
/* The command's exit status: status itself when no signal came; else the one-line message
 * ("rmu CMD: interrupted by SIGINT; ...resume...") and 128 + the signal number. */
int cli_sig_end(int status);

#endif
