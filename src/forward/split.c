/* split: jobs over threads (see split.h). */
#include "forward/split.h"
#include "util/limits.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define SPLIT_MAX_THREADS 64

typedef struct {
    sm_split_fn fn;
    void *ctx;
    int first, step, n;
    int failed; /* this thread's failed job, or n */
} split_part;

static void *split_thread(void *p)
{
    split_part *s = p;
    for (int j = s->first; j < s->n; j += s->step)
        if (s->fn(s->ctx, j)) {
            s->failed = j;
            break;
        }
    return NULL;
}

int sm_split_threads(void)
{
    const char *e = getenv("SUBMOE_THREADS");
    long v = e && *e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    return sm_limits_threads(v < 1 ? 1 : v > 64 ? 64 : (int)v);
}

int sm_split_run(int n, sm_split_fn fn, void *ctx)
{
    int nt = sm_split_threads();
    nt = nt > n ? n : nt > SPLIT_MAX_THREADS ? SPLIT_MAX_THREADS : nt;
    if (nt < 1)
        return n;
    split_part parts[SPLIT_MAX_THREADS];
    pthread_t tids[SPLIT_MAX_THREADS];
    for (int i = 0; i < nt; i++)
        parts[i] = (split_part){fn, ctx, i, nt, n, n};
    int started = 1;
    for (; started < nt; started++)
        if (pthread_create(&tids[started], NULL, split_thread, &parts[started]))
            break;
    for (int i = started; i < nt; i++) /* threads that could not start run here */
        split_thread(&parts[i]);
    split_thread(&parts[0]);
    int failed = n; /* the lowest failure: its thread ran every job of its own below it */
    for (int i = 0; i < nt; i++) {
        if (i > 0 && i < started)
            pthread_join(tids[i], NULL);
        failed = parts[i].failed < failed ? parts[i].failed : failed;
    }
    return failed;
}
