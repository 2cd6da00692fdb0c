#include "util/monitor.h"

#include "util/diag.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SUBMOE_FAULT=checks: the longest CPU time a thread worked between two checks (see monitor.h). */
static pthread_once_t trace_once = PTHREAD_ONCE_INIT;
static int trace_on;
static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;
static long trace_checks;
static double trace_gap;
static const char *trace_from, *trace_to; /* the longest gap's checks (NULL from: thread start) */
static int trace_from_line, trace_to_line;
static _Thread_local double trace_last; /* this thread's CPU time at its previous check, */
static _Thread_local const char *trace_last_file; /* and where that was */
static _Thread_local int trace_last_line;

static void trace_report(void)
{
    pthread_mutex_lock(&trace_mu);
    fprintf(stderr, "submoe-fault: %ld monitor checks, longest gap %.0f ms of CPU time, from %s:%d to %s:%d\n",
            trace_checks, trace_gap * 1e3, trace_from ? trace_from : "thread start", trace_from_line,
            trace_to ? trace_to : "-", trace_to_line);
    pthread_mutex_unlock(&trace_mu);
}

static void trace_setup(void)
{
    const char *e = getenv("SUBMOE_FAULT");
    trace_on = e && !strcmp(e, "checks");
    if (trace_on)
        atexit(trace_report);
}

static void trace_check(const char *file, int line)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* starts at 0 when the thread does */
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9, gap = now - trace_last;
    pthread_mutex_lock(&trace_mu);
    trace_checks++;
    if (gap > trace_gap) {
        trace_gap = gap;
        trace_from = trace_last_file;
        trace_from_line = trace_last_line;
        trace_to = file;
        trace_to_line = line;
    }
    pthread_mutex_unlock(&trace_mu);
    trace_last = now;
    trace_last_file = file;
    trace_last_line = line;
}

void sm_monitor_trace_restart_at(const char *file, int line)
{
    pthread_once(&trace_once, trace_setup);
    if (!trace_on)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    trace_last = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    trace_last_file = file;
    trace_last_line = line;
}

int sm_monitor_check_at(const sm_monitor *m, const char *file, int line)
{
    if (m && m->cancel) { /* only a cancellable monitor counts: a NULL one cannot stop anything */
        pthread_once(&trace_once, trace_setup);
        if (trace_on)
            trace_check(file, line);
    }
    if (sm_monitor_cancelled(m))
        return sm_err("cancelled");
    return 0;
}

static void span_forward(void *ctx, double fraction, const char *what)
{
    const sm_monitor_span *s = ctx;
    sm_monitor_report(s->parent, s->lo + (s->hi - s->lo) * fraction, what);
}

const sm_monitor *sm_monitor_span_init(sm_monitor_span *span, const sm_monitor *parent,
                                       double lo, double hi)
{
    if (!parent)
        return NULL;
    span->parent = parent;
    span->lo = lo;
    span->hi = hi;
    span->mon.fn = span_forward;
    span->mon.ctx = span;
    span->mon.cancel = parent->cancel;
    return &span->mon;
}
