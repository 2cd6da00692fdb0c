/* limits: running under an address-space limit (ulimit -v, RLIMIT_AS).
 *
 * OpenBLAS (0.3.21, pthreads) maps a 128 MiB work buffer for every thread that runs a BLAS
 * routine, and retries a failed mapping forever; its library constructor, before main, also
 * starts one worker thread per CPU, each mapping such a buffer, and raises SIGINT when a thread
 * cannot be created. Under a tight limit that made every command spin forever at exit (the
 * worker never got its buffer, the exit joined it) or die of SIGINT (status 130).
 *
 * So, before any library constructor (an ELF .preinit_array entry), the BLAS thread count is
 * sized to the limit: the program executes itself again with OPENBLAS_NUM_THREADS set to the
 * threads whose buffers fit (1 for the limits that matter), lowering the user's own
 * OPENBLAS_NUM_THREADS / GOTO_NUM_THREADS / OMP_NUM_THREADS only if it does not fit. Then sm_limits_check() refuses a limit below what a
 * command needs with one message, and for the commands that run BLAS maps the main thread's
 * buffer at once, before any data, so that a later BLAS call can never be the one that does not
 * fit (the data's own allocations fail with "out of memory" instead). Under a limit, the forward
 * pass runs on one thread (sm_limits_threads). */
#ifndef SM_LIMITS_H
#define SM_LIMITS_H

#include <stdbool.h>

/* For command `name` (for the message): 0 when the address space suffices (or is unlimited),
 * else -1 after printing "submoe NAME: the address-space limit (ulimit -v) of N KiB is too
 * small: at least M MiB is needed". uses_blas: the command runs BLAS/LAPACK. */
int sm_limits_check(const char *name, bool uses_blas);
/* Threads of our own that may run BLAS at once: `wanted` without an address-space limit, else 1
 * (each would need its own OpenBLAS buffer, mapped in the middle of the work). */
int sm_limits_threads(int wanted);
/* The address-space limit in KiB, 0 if none (for "out of memory" messages). */
unsigned long long sm_limits_address_kib(void);

#endif
