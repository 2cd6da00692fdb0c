/* split: independent jobs dealt round-robin to the forward pass's threads (sm_split_threads).
 * For work whose every result is computed the same way whatever thread runs it, so that the
 * output is bit-identical to one thread's: a MoE layer's conversions, the LM head's scores. */
#ifndef SM_SPLIT_H
#define SM_SPLIT_H

/* The threads: SUBMOE_THREADS, else the online CPUs (at most 64); one under an address-space
 * limit, where each would need its own BLAS buffer (util/limits.h). The forward pass's too. */
int sm_split_threads(void);

/* One job: 0, or -1 when it failed (a message it leaves is on its own thread: the caller says
 * what failed, from the job's index). */
typedef int (*sm_split_fn)(void *ctx, int job);

/* Jobs [0, n): the lowest job that failed (every job below it ran and succeeded), or n when none
 * did. Jobs above a failed one on the same thread are not run. */
int sm_split_run(int n, sm_split_fn fn, void *ctx);

#endif
