/* fieldmap.c - option field names in library errors -> command-line flags (fieldmap.h). */
#include "fieldmap.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* The flag of the field spelled s[0..n), or NULL. */
static const char *flag_of(const cli_field *map, const char *s, size_t n) {
    for (; map->field; map++)
        if (strlen(map->field) == n && !memcmp(map->field, s, n)) return map->flag;
    return NULL;
}

static int ident(char c) { return isalnum((unsigned char)c) || c == '_'; }

void cli_field_flags(rmu_err *e, const cli_field *map) {
    char out[sizeof e->msg];
    const char *s = e->msg;
    size_t w = 0, i = 0, n = strlen(s);
    size_t lead = 0;
    while (ident(s[lead])) lead++;
    const char *f = lead && s[lead] == ':' ? flag_of(map, s, lead) : NULL;
    if (f) {
        w = (size_t)snprintf(out, sizeof out, "%s", f);
        i = lead;
    }
    static const char kw[] = "option ";
    while (i < n && w + 1 < sizeof out) {
        if (!strncmp(s + i, kw, sizeof kw - 1) && (i == 0 || !ident(s[i - 1]))) {
            size_t a = i + sizeof kw - 1, b = a;
            while (ident(s[b])) b++;
            if ((f = flag_of(map, s + a, b - a))) {
                w += (size_t)snprintf(out + w, sizeof out - w, "%s", f);
                if (w >= sizeof out) w = sizeof out - 1;
                i = b;
                continue;
            }
        }
        out[w++] = s[i++];
    }
    out[w] = 0;
    memcpy(e->msg, out, w + 1);
}

void cli_field_note(const char *cmd, const cli_field *map, const char *msg) {
    rmu_err m;
    snprintf(m.msg, sizeof m.msg, "%s", msg);
    cli_field_flags(&m, map);
    fprintf(stderr, "rmu %s: %s\n", cmd, m.msg);
}
