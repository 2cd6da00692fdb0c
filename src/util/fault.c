/* fault: failure injection (see fault.h). */
#include "util/fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int mode = -1; /* -1 unread, 0 off, 1 fail, 2 count, 3 stall, 4 pause, 5 no renameat2 */
static sm_fault_point at_point;
static long at_n, counts[3];
static int err_code = ENOSPC, short_write;

static void report(void)
{
    fprintf(stderr, "submoe-fault: %ld writes, %ld renames\n", counts[0], counts[1]);
}

static void setup(void)
{
    const char *e = getenv("SUBMOE_FAULT");
    mode = 0;
    if (!e || !*e)
        return;
    if (!strcmp(e, "count")) {
        mode = 2;
        atexit(report);
        return;
    }
    if (!strcmp(e, "no-renameat2")) {
        mode = 5;
        return;
    }
    char what[16] = "", how[16] = "";
    long n = 0;
    if (sscanf(e, "%15[a-z]:%ld:%15s", what, &n, how) < 2 || n < 1)
        return;
    at_point = !strcmp(what, "rename")   ? SM_FAULT_RENAME
             : !strcmp(what, "mapped") ? SM_FAULT_MAP
                                       : SM_FAULT_WRITE;
    at_n = n;
    if (!strcmp(what, "stall") || !strcmp(what, "pause") || !strcmp(what, "mapped")) {
        mode = !strcmp(what, "stall") ? 3 : 4;
        return;
    }
    err_code = !strcmp(how, "eio") || at_point == SM_FAULT_RENAME ? EIO : ENOSPC;
    short_write = !strcmp(how, "short");
    mode = 1;
}

int sm_fault_hit(sm_fault_point p, size_t n, size_t *short_n)
{
    if (mode < 0)
        setup();
    if (short_n)
        *short_n = 0;
    if (!mode)
        return 0;
    long k = ++counts[p];
    if (mode == 3 && p == at_point && k == at_n) {
        struct timespec t0, t;
        fprintf(stderr, "submoe-fault: stalling\n"); /* tests wait for this line */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do { /* nanosleep returns early on a signal: keep stalling */
            nanosleep(&(struct timespec){0, 50000000}, NULL);
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while (t.tv_sec - t0.tv_sec < 30);
        return 0;
    }
    if (mode == 4 && p == at_point && k == at_n) {
        fprintf(stderr, "submoe-fault: paused\n"); /* the test changes an input, then sends SIGCONT */
        raise(SIGSTOP);
        return 0;
    }
    if (mode != 1 || p != at_point || k != at_n)
        return 0;
    if (short_write && short_n)
        *short_n = n / 2;
    return err_code;
}

bool sm_fault_no_renameat2(void)
{
    if (mode < 0)
        setup();
    return mode == 5;
}
