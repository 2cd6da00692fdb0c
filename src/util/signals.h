/* signals: SIGINT/SIGTERM turn into an orderly failure. The handler only records the signal;
 * long loops (writers, progress updates) notice it through sm_interrupted(), fail with
 * "interrupted", and the normal error path removes temporaries. main() then re-raises the
 * signal so the exit status is the conventional one (130 for SIGINT). */
#ifndef SM_SIGNALS_H
#define SM_SIGNALS_H

void sm_signals_install(void);
/* The signal received so far (0 if none). */
int sm_interrupted(void);
/* If a signal arrived: restore its default action and raise it (does not return). */
void sm_signals_reraise(void);
/* -1 with the message "interrupted by signal N" if one arrived, else 0. */
int sm_check_interrupt(void);

#endif
