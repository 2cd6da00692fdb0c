/* fault: failure injection at the program's write points, for tests (issue 7).
 *
 * SUBMOE_FAULT="write:N"        the N-th write (1-based, counted over the whole run) fails: ENOSPC
 * SUBMOE_FAULT="write:N:eio"    ... with EIO
 * SUBMOE_FAULT="write:N:short"  ... writes half its bytes, then fails (a short write)
 * SUBMOE_FAULT="rename:N"       the N-th rename into place fails (EIO)
 * SUBMOE_FAULT="stall:N"        the N-th write first stalls for 30 s, through any signal (an
 *                               uncancellable step, for the second-signal test; it says
 *                               "submoe-fault: stalling" on stderr first), then goes ahead
 * SUBMOE_FAULT="pause:N"       the N-th write first stops the process (SIGSTOP) after saying
 *                               "submoe-fault: paused" on stderr: a test changes an input file
 *                               meanwhile, then continues it (SIGCONT)
 * SUBMOE_FAULT="mapped:N"      the same pause once the N-th input file has been mapped and its
 *                               header validated, before any of its data is read (model/st.c)
 * SUBMOE_FAULT="count"          nothing fails; at exit "submoe-fault: W writes, R renames" on stderr
 * SUBMOE_FAULT="checks"         nothing fails; at exit the number of monitor checks and the longest
 *                               CPU time a thread worked between two (util/monitor.h), on stderr
 * SUBMOE_FAULT="no-renameat2"   renameat2's flags fail with EINVAL, as on file systems without
 *                               them, so publishing takes its fallbacks (util/publish.h)
 * Every write of the program goes through sm_fwrite / sm_write_file (util/fileio.h) and every
 * final move into place through sm_publish, so a test can fail each point in turn. */
#ifndef SM_FAULT_H
#define SM_FAULT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { SM_FAULT_WRITE = 0, SM_FAULT_RENAME, SM_FAULT_MAP } sm_fault_point;

/* 0 to go ahead; else the errno to fail with. *short_n (writes only) is set to the bytes to
 * write before failing (0: none). */
int sm_fault_hit(sm_fault_point p, size_t n, size_t *short_n);
/* SUBMOE_FAULT=no-renameat2 */
bool sm_fault_no_renameat2(void);

#endif
