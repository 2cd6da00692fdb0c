/* parallel: independent loop items on every core (see parallel.h). */
#include "util/parallel.h"

#include "util/diag.h"
#include "util/limits.h"

#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_default;
static int threads_set; /* sm_parallel_set_threads; 0: the default */
static int64_t min_work = SM_PARALLEL_MIN_WORK;

static void threads_init(void)
{
    const char *e = getenv("OMP_NUM_THREADS");
    long v = e && *e ? strtol(e, NULL, 10) : 0;
    if (v < 1)
        v = sysconf(_SC_NPROCESSORS_ONLN);
    threads_default = sm_limits_threads(v < 1 ? 1 : v > MAX_THREADS ? MAX_THREADS : (int)v);
}

int sm_parallel_threads(void)
{
    pthread_once(&threads_once, threads_init);
    int n = __atomic_load_n(&threads_set, __ATOMIC_RELAXED);
    return n > 0 ? n : threads_default;
}

int sm_parallel_set_threads(int n)
{
    int prev = sm_parallel_threads();
    __atomic_store_n(&threads_set, n < 0 ? 0 : n > MAX_THREADS ? MAX_THREADS : n, __ATOMIC_RELAXED);
    return prev;
}

int64_t sm_parallel_set_min_work(int64_t work)
{
    return __atomic_exchange_n(&min_work, work < 0 ? SM_PARALLEL_MIN_WORK : work, __ATOMIC_RELAXED);
}

/* One loop's shared state: the lowest failing item and its message, and the items done. */
typedef struct {
    int64_t failed; /* INT64_MAX: none */
    char msg[512];
    int stop;
    int64_t done;
} loop_state;

static void loop_fail(loop_state *s, int64_t i)
{
#pragma omp critical(sm_parallel_fail)
    if (i < s->failed) {
        s->failed = i;
        snprintf(s->msg, sizeof s->msg, "%s", sm_errmsg());
    }
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
}

int sm_parallel_for(int64_t n, int64_t work, sm_parallel_item fn, void *ctx, const sm_monitor *mon,
                    const char *what)
{
    const sm_monitor item_mon = {.cancel = mon ? mon->cancel : NULL};
    const sm_monitor *im = mon ? &item_mon : NULL;
    const int64_t nt = work < __atomic_load_n(&min_work, __ATOMIC_RELAXED) ? 1 : sm_parallel_threads() < n ? sm_parallel_threads() : n;
    if (nt <= 1) { /* the plain loop: no team */
        for (int64_t i = 0; i < n; i++) {
            if (sm_monitor_check(mon) || fn(ctx, i, im))
                return -1;
            if (what)
                sm_monitor_report(mon, (i + 1.0) / n, what);
        }
        return 0;
    }
    loop_state s = {.failed = INT64_MAX};
#pragma omp parallel num_threads((int)nt)
    {
        const bool caller = omp_get_thread_num() == 0; /* the master thread is the calling one */
        if (!caller)
            sm_monitor_trace_restart();
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < n; i++) {
            if (__atomic_load_n(&s.stop, __ATOMIC_RELAXED))
                continue;
            if (sm_monitor_check(mon) || fn(ctx, i, im)) {
                loop_fail(&s, i);
                continue;
            }
            const int64_t done = __atomic_add_fetch(&s.done, 1, __ATOMIC_RELAXED);
            if (caller && what)
                sm_monitor_report(mon, (double)done / n, what);
        }
    }
    if (s.failed != INT64_MAX) {
        sm_err("%s", s.msg);
        return -1;
    }
    return 0;
}
