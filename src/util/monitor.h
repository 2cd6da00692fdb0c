/* monitor: progress reports and cooperative cancellation for long engine work.
 *
 * Engine functions that can run for seconds take an optional `const sm_monitor *` (NULL =
 * silent, not cancellable). They call the progress callback between blocks of work and stop
 * with -1 and the message "cancelled" as soon as *cancel becomes non-zero, so a front end can
 * run them on a worker thread and stay responsive. */
#ifndef SM_MONITOR_H
#define SM_MONITOR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sm_monitor {
    /* fraction in [0, 1] of this call's work; `what` names the current step. May be NULL. */
    void (*fn)(void *ctx, double fraction, const char *what);
    void *ctx;
    volatile int *cancel; /* set non-zero (from any thread) to stop; may be NULL */
} sm_monitor;

static inline void sm_monitor_report(const sm_monitor *m, double fraction, const char *what)
{
    if (m && m->fn)
        m->fn(m->ctx, fraction < 0 ? 0 : fraction > 1 ? 1 : fraction, what);
}

/* Any thread may ask (util/parallel's workers do): the flag is read atomically. */
static inline bool sm_monitor_cancelled(const sm_monitor *m)
{
    return m && m->cancel && __atomic_load_n(m->cancel, __ATOMIC_RELAXED);
}

/* 0, or -1 with the message "cancelled" when cancellation was requested.
 *
 * Long loops call it at least every ~200 ms of work at real shapes, so that Esc, q and a signal
 * take effect within a second. SUBMOE_FAULT=checks measures that (util/fault.h): every check of a
 * cancellable monitor records the CPU time its thread spent since the thread's previous check
 * (or since the thread started), and at exit stderr gets "submoe-fault: N monitor checks,
 * longest gap G ms of CPU time, from FILE:LINE to FILE:LINE" — CPU time, not wall time, so the figure
 * does not grow when other processes share the cores. */
int sm_monitor_check_at(const sm_monitor *m, const char *file, int line);
#define sm_monitor_check(m) sm_monitor_check_at((m), __FILE__, __LINE__)

/* SUBMOE_FAULT=checks: the calling thread starts new work here, so its next check's gap counts
 * from now. For pooled worker threads (util/parallel), whose CPU time between two parallel loops
 * went to other work (oneDNN's GEMMs run on the same pool), not to unchecked work of ours. */
void sm_monitor_trace_restart_at(const char *file, int line);
#define sm_monitor_trace_restart() sm_monitor_trace_restart_at(__FILE__, __LINE__)

/* A sub-range [lo, hi] of a parent's progress: work reported as 0..1 on the span's monitor
 * appears as lo..hi on the parent; cancellation is the parent's. */
typedef struct sm_monitor_span {
    sm_monitor mon;
    const sm_monitor *parent;
    double lo, hi;
} sm_monitor_span;

/* Returns &span->mon, or NULL when parent is NULL (so the child stays silent). */
const sm_monitor *sm_monitor_span_init(sm_monitor_span *span, const sm_monitor *parent,
                                       double lo, double hi);

#endif
