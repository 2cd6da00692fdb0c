/* signals: SIGINT/SIGTERM/SIGHUP turn into an orderly failure.
 *
 * The handler only records the signal and raises a cancellation flag. Long work stops through it
 * in two ways: engine and pipeline functions take an sm_monitor whose `cancel` points at the flag
 * (sm_signals_monitor()) and fail with
 * "cancelled"; the writers (sm_fwrite, sm_publish, st_write) check sm_interrupted() and fail with
 * "interrupted". Either way the normal error path removes temporaries, and nothing is renamed into
 * place once a signal has arrived. A second signal does not wait for that: see
 * sm_signals_save_terminal. main() then re-raises the signal so that the exit status is the
 * conventional one (130 for SIGINT, 143 for SIGTERM). SIGXFSZ (ulimit -f) is ignored: writes past
 * the limit fail with EFBIG and are reported like any write error. */
#ifndef SM_SIGNALS_H
#define SM_SIGNALS_H

#include "util/monitor.h"

void sm_signals_install(void);
/* A second signal quits at once (status 128+N) instead of waiting for the orderly stop, saying so
 * and naming the temporary output it leaves, if one was noted; the workbench's terminal is put
 * back to the settings saved here (before initscr). */
void sm_signals_save_terminal(void);
void sm_signals_note_temp(const char *path); /* NULL: nothing to report */
/* The signal received so far (0 if none); SIGBUS once a mapped input changed (util/mapguard.h),
 * which stops work and writers the same way but exits with status 1, not by the signal. */
int sm_interrupted(void);
/* If a signal arrived: restore its default action and raise it (does not return). */
void sm_signals_reraise(void);
/* -1 with the message "interrupted by signal N (NAME)" if one arrived (or the changed input's,
 * see sm_interrupted), else 0. */
int sm_check_interrupt(void);
/* A silent monitor cancelled by the signals (for the command-line front ends). */
const sm_monitor *sm_signals_monitor(void);
/* What a command reports when it failed: "interrupted by signal N (NAME)" once a signal arrived
 * (whatever "cancelled" or write error it caused), else sm_errmsg() (which names a changed input
 * file once one changed). */
const char *sm_signals_errmsg(void);

#endif
