/* tui_jobs: what the workbench's worker thread does (tui_jobs.c). Internal to src/tui. */
#ifndef SM_TUI_JOBS_H
#define SM_TUI_JOBS_H

#include "tui/tui_worker.h"
#include "util/monitor.h"

/* Run one job on the worker thread. 0, or -1 with a message (sm_errmsg). */
int tui_job_run(tui_app *a, const tui_job *j, const sm_monitor *mon);

#endif
