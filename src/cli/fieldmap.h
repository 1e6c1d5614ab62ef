/* fieldmap.h - library errors name options by their field ("layer_ids: 12 is out of range",
 * "... pass option resume ..."); a command rewrites them into its flags before printing. */
#ifndef RMU_CLI_FIELDMAP_H
#define RMU_CLI_FIELDMAP_H

#include "core/err.h"

typedef struct cli_field {
    const char *field, *flag;
} cli_field;

/* In e->msg: a leading "FIELD:" becomes "FLAG:", and every "option FIELD" becomes FLAG
 * (map ends with {NULL, NULL}). Unknown fields are left as they are. */
void cli_field_flags(rmu_err *e, const cli_field *map);

/* A library note (progress callbacks) as "rmu CMD: note" on stderr, fields named as flags. */
void cli_field_note(const char *cmd, const cli_field *map, const char *msg);

#endif
