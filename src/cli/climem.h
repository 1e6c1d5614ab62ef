/* climem.h - the memory check every command that maps a model makes before it starts:
 * what the run needs (src/model/memest.h, from the command's own flags and defaults) against
 * MemAvailable. Over it: a warning, or with --strict-memory (any command) an error. */
#ifndef RMU_CLI_CLIMEM_H
#define RMU_CLI_CLIMEM_H

/* Removes --strict-memory from argv (argv[1] is the command), estimates the run of argv's
 * command and prints the warning when it does not fit. Returns 0 to go on, 1 when it does not
 * fit under --strict-memory (the error is printed). Commands that map no model, and models
 * that cannot be read (the command reports those itself), pass. */
int cli_mem_precheck(int *argc, char **argv);

#endif
