/* progress: a progress bar on stderr when it is a terminal; silent otherwise. */
#ifndef SM_PROGRESS_H
#define SM_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sm_progress {
    const char *label;
    uint64_t total, done;
    bool enabled;
    double start, last_draw;
} sm_progress;

void sm_progress_start(sm_progress *p, const char *label, uint64_t total, bool quiet);
void sm_progress_update(sm_progress *p, uint64_t done);
void sm_progress_finish(sm_progress *p);
/* Close the bar: at 100% when the work finished (ok), else where it stopped, marked so. */
void sm_progress_end(sm_progress *p, bool ok);
double sm_now(void); /* monotonic seconds */

#endif
