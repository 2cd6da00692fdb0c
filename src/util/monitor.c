#include "util/monitor.h"

#include "util/diag.h"

int sm_monitor_check(const sm_monitor *m)
{
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
