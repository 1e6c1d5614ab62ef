/* sig.c - SIGINT / SIGTERM handling for writing commands (see sig.h). The only mutable
 * globals of the CLI's signal path live here: the flag, the outputs, the watchdog. */
#include "sig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/hfdir.h"
#include "train/ckpt.h"

enum { OUT_FILE, OUT_DIR, OUT_WORK, OUT_RESUMABLE };

/* What a stop cleans and says, per output kind:
 *   FILE       written whole by rmu_afile: PATH.tmp.PID removed;
 *   DIR        a model folder built by hfdir: .NAME.rmu-staging.PID removed;
 *   WORK       `rmu train`-style OUT with OUT.rmu-work: its loose files removed, checkpoints
 *              kept and named for --resume;
 *   RESUMABLE  records appended or rewritten whole as they finish: kept, a rerun continues. */
typedef struct {
    const char *cmd, *sub; /* sub: second word (attack relearn, mtbench judge), NULL = none */
    const char *flag, *alias;
    int kind;
} out_rule;

static const out_rule RULES[] = {
    {"train", NULL, "--out", "-o", OUT_WORK},
    {"unlearn", NULL, "--out", NULL, OUT_DIR},
    {"attack", "relearn", "--out", "-o", OUT_WORK},
    {"attack", "ablate", "--out", "-o", OUT_DIR},
    {"eval", NULL, "--output", NULL, OUT_FILE},
    {"eval", NULL, "--log-samples", NULL, OUT_FILE},
    {"mtbench", "judge", "--out", NULL, OUT_RESUMABLE},
    {"mtbench", "show", "--output", NULL, OUT_FILE},
    {"mtbench", "", "--out", NULL, OUT_RESUMABLE}, /* "": answers (no judge/show word) */
    {"export", NULL, "--gguf", NULL, OUT_FILE},
    {"init", NULL, "-o", "--out", OUT_DIR},
    {"quantize", NULL, "--out", "-o", OUT_DIR},
};

#define MAX_OUTS 8
static struct {
    const char *path;
    int kind;
} outs[MAX_OUTS];
static int nouts;
static const char *cmd_name;
static int quiet; /* an MPI rank other than 0: rank 0 speaks for the job */
static volatile sig_atomic_t said; /* the command printed its error before the signal came */
static volatile sig_atomic_t caught;
static sem_t wake;
static atomic_int claimed; /* 0 nobody, 1 the command's own exit, 2 the watchdog */

static void on_signal(int s) {
    if (!caught) caught = s;
    sem_post(&wake); /* async-signal-safe: wakes the watchdog (a second signal: at once) */
}

/* ---------------------------------------------------------------- cleanup */

static void split(const char *path, char *dir, char *base) { /* 4096-byte buffers */
    char a[4096], b[4096];
    size_t n = strlen(path);
    snprintf(a, sizeof a, "%s", path);
    while (n > 1 && a[n - 1] == '/') a[--n] = 0;
    snprintf(b, sizeof b, "%s", a);
    snprintf(dir, 4096, "%s", dirname(a));
    snprintf(base, 4096, "%s", basename(b));
}

static void unlink_loose(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[8300];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (lstat(p, &st) == 0 && !S_ISDIR(st.st_mode)) unlink(p);
    }
    closedir(d);
}

/* This process's staging output of every recorded output; the outputs themselves, whole
 * (or absent), stay. */
static void clean(void) {
    long pid = (long)getpid();
    for (int i = 0; i < nouts; i++) {
        char dir[4096], base[4096], p[8400];
        split(outs[i].path, dir, base);
        snprintf(p, sizeof p, "%s.tmp.%ld", outs[i].path, pid);
        unlink(p);
        snprintf(p, sizeof p, "%s/.%s.rmu-staging.%ld", dir, base, pid);
        for (int k = 0; k < 3 && rmu_hf_rmtree(p); k++) continue; /* a file created meanwhile: again */
        if (outs[i].kind == OUT_WORK) {
            snprintf(p, sizeof p, "%s/%s.rmu-work", dir, base);
            unlink_loose(p);
            rmdir(p); /* only when no checkpoint is in it */
        }
        snprintf(p, sizeof p, "%s/.%s.rmu-lock", dir, base);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char b[32] = {0};
            ssize_t n = read(fd, b, sizeof b - 1);
            close(fd);
            if (n > 0 && strtol(b, NULL, 10) == pid) unlink(p);
        }
    }
}

/* What happened to the first output, for the message. */
static void hint(int status, char *buf, size_t cap) {
    if (!nouts) {
        snprintf(buf, cap, "nothing was written");
        return;
    }
    const char *p = outs[0].path;
    char work[4200];
    switch (outs[0].kind) {
    case OUT_WORK: {
        snprintf(work, sizeof work, "%s", p);
        size_t n = strlen(work);
        while (n > 1 && work[n - 1] == '/') work[--n] = 0;
        snprintf(work + n, sizeof work - n, ".rmu-work");
        long *steps = NULL;
        int k = 0;
        rmu_err e;
        if (status == 0 && rmu_file_exists(p)) snprintf(buf, cap, "%s is complete", p);
        else if (rmu_ckpt_list(work, &steps, &k, &e) == 0 && k > 0)
            snprintf(buf, cap, "run the same command with --resume to continue from %s/checkpoint-%ld", work,
                     steps[k - 1]);
        else
            snprintf(buf, cap, "no checkpoint was written, so it cannot be resumed (--save-every N makes a run "
                               "resumable); %s was not written", p);
        free(steps);
        break;
    }
    case OUT_RESUMABLE:
        snprintf(buf, cap, "what was finished is kept in %s: run the same command again to continue", p);
        break;
    default:
        if (status == 0) snprintf(buf, cap, "%s is complete", p);
        else snprintf(buf, cap, "%s was not written (run the command again; it starts over)", p);
    }
}

static void message(int status) {
    if (quiet || said) return; /* one line per job: an error already printed is that line */
    char h[1024], line[1400];
    hint(status, h, sizeof h);
    int n = snprintf(line, sizeof line, "rmu %s: interrupted by %s; %s\n", cmd_name,
                     caught == SIGTERM ? "SIGTERM" : "SIGINT", h);
    if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* ---------------------------------------------------------------- watchdog */

static void *watchdog(void *arg) {
    (void)arg;
    while (!caught)
        while (sem_wait(&wake) != 0 && errno == EINTR) continue;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 500000000L; /* the command's own cleanup usually wins well before this */
    if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
    while (sem_timedwait(&wake, &t) != 0 && errno == EINTR) continue;
    int none = 0;
    if (!atomic_compare_exchange_strong(&claimed, &none, 2)) return NULL; /* the command is exiting */
    clean();
    message(1);
    _exit(128 + caught);
}

static int wants(const out_rule *r, int argc, char **argv) {
    if (strcmp(r->cmd, argv[1])) return 0;
    if (!r->sub) return 1;
    const char *w = argc > 2 && argv[2][0] != '-' ? argv[2] : "";
    if (!*r->sub) return strcmp(w, "judge") && strcmp(w, "show");
    return !strcmp(w, r->sub);
}

void cli_sig_setup(int argc, char **argv) {
    int any = 0;
    for (size_t r = 0; argc >= 2 && r < sizeof RULES / sizeof RULES[0]; r++) {
        if (!wants(&RULES[r], argc, argv)) continue;
        any = 1;
        for (int i = 2; i + 1 < argc && nouts < MAX_OUTS; i++)
            if (!strcmp(argv[i], RULES[r].flag) || (RULES[r].alias && !strcmp(argv[i], RULES[r].alias))) {
                outs[nouts].path = argv[i + 1];
                outs[nouts++].kind = RULES[r].kind;
                break;
            }
    }
    if (!any) return;
    cmd_name = argv[1];
    /* under mpirun, a rank that stopped because another one failed (mpirun then sends
     * SIGTERM to the rest) must not add a second line to the job's one error */
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = getenv("PMIX_RANK");
    if (!rank) rank = getenv("PMI_RANK");
    quiet = rank && strcmp(rank, "0") != 0;
    pthread_t th;
    if (sem_init(&wake, 0, 0) != 0 || pthread_create(&th, NULL, watchdog, NULL) != 0) return; /* defaults stay */
    pthread_detach(th);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* reads and writes go on; the flag is polled */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

const volatile sig_atomic_t *cli_sig_flag(void) { return &caught; }

int cli_sig_caught(void) { return caught; }

void cli_sig_error_said(void) { said = 1; }

int cli_sig_end(int status) {
    int none = 0;
    if (!atomic_compare_exchange_strong(&claimed, &none, 1))
        for (;;) pause(); /* the watchdog is stopping the process */
    if (!caught) return status;
    clean();
    message(status);
    return 128 + caught;
}
