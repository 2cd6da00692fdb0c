#include "util/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double sm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void draw(sm_progress *p)
{
    const int width = 30;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1.0)
        frac = 1.0;
    int fill = (int)(frac * width + 0.5);
    double el = sm_now() - p->start;
    double eta = frac > 0.001 ? el * (1.0 - frac) / frac : 0.0;
    fprintf(stderr, "\r%-18.18s [", p->label);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %5.1f%%  %5.0fs elapsed  %5.0fs left ", 100.0 * frac, el, eta);
    fflush(stderr);
}

void sm_progress_start(sm_progress *p, const char *label, uint64_t total, bool quiet)
{
    p->label = label;
    p->total = total;
    p->done = 0;
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->start = sm_now();
    p->last_draw = 0;
    if (p->enabled)
        draw(p);
}

void sm_progress_update(sm_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double t = sm_now();
    if (t - p->last_draw < 0.1 && done < p->total)
        return;
    p->last_draw = t;
    draw(p);
}

void sm_progress_finish(sm_progress *p)
{
    sm_progress_end(p, true);
}

void sm_progress_end(sm_progress *p, bool ok)
{
    if (!p->enabled)
        return;
    if (ok)
        p->done = p->total;
    draw(p);
    if (!ok)
        fputs(" stopped", stderr);
    fputc('\n', stderr);
}
