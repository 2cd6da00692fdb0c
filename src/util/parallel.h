/* parallel: the independent items of a loop on every core (issue 16: method auto's per-layer
 * work on both cores of the target machine).
 *
 * Built on OpenMP (libgomp), the runtime oneDNN's GEMMs already run on: a loop's threads are the
 * pool oneDNN uses between its products, so the two never keep two sets of threads spinning
 * against each other, and the pool is started once per process.
 *
 * Results do not depend on the thread count: each item is computed exactly as one thread computes
 * it and writes only its own place; whatever combines items (a sum, a best) is left to the caller,
 * after the loop, in item order.
 *
 * Inside an item: no OpenBLAS/LAPACK (its own threads and buffers) and util/matmul only for
 * bf16 products (oneDNN runs them on the item's thread, with that thread's own buffers; its fp32
 * products may fall back to OpenBLAS), no progress reports (only the calling thread reports: the loop does it, after each
 * of its items), and cancellation only through the monitor the item is handed (its cancel flag,
 * read atomically; checks are traced per thread, util/monitor.h). */
#ifndef SM_PARALLEL_H
#define SM_PARALLEL_H

#include <stdint.h>

#include "util/monitor.h"

/* Threads of a parallel loop: OMP_NUM_THREADS when set (its first number), else the online CPUs;
 * 1 under an address-space limit (util/limits.h); at most 64. */
int sm_parallel_threads(void);
/* Set the thread count (n >= 1; 0: back to sm_parallel_threads' rule) for every later loop, and
 * return the previous one. For tests, which compare results across thread counts. */
int sm_parallel_set_threads(int n);

/* One item: 0, or -1 with a message (sm_err). mon: NULL, or a monitor with the caller's cancel
 * flag and no progress callback. */
typedef int (*sm_parallel_item)(void *ctx, int64_t i, const sm_monitor *mon);

/* Below this much work (the caller's estimate, in elementary operations: about a millisecond of
 * one core) a loop runs on the calling thread: waking the pool costs more than it saves, and far
 * more on a loaded machine, where the woken thread may wait for a core while the caller spins. */
#define SM_PARALLEL_MIN_WORK ((int64_t)1 << 22)
/* Set that bound (0: every loop on the threads; negative: back to SM_PARALLEL_MIN_WORK) and
 * return the previous one. For tests, whose shapes are small. */
int64_t sm_parallel_set_min_work(int64_t work);

/* fn(ctx, i, ...) for every i in [0, n), on up to sm_parallel_threads() threads (one when `work`,
 * the estimated operations of all items, is below SM_PARALLEL_MIN_WORK), items handed out
 * in ascending order. After a failure or a cancellation no further item starts; the result is the
 * lowest failing item's (the one a serial loop stops at): 0, or -1 with its message ("cancelled"
 * when cancelled). Progress: the fraction of items done, reported on mon with `what` (NULL: none)
 * by the calling thread. */
int sm_parallel_for(int64_t n, int64_t work, sm_parallel_item fn, void *ctx, const sm_monitor *mon,
                    const char *what);

#endif
