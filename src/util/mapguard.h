/* mapguard: reads from memory-mapped input files survive the file changing under them.
 *
 * A mapped file that is truncated while it is read (or whose storage fails: a network file
 * system's I/O error) raises SIGBUS at the read, which would kill the process with no message
 * and leave its temporaries behind. Every read-only file mapping is registered here; a SIGBUS
 * inside one is caught: the rest of that mapping is replaced by zero pages so the read completes,
 * the first faulting address is recorded, and the trip hook runs (util/signals uses it to cancel
 * long work and stop every writer, as a signal does). From then on sm_errmsg() (util/diag.h)
 * reports sm_mapguard_message(), "FILE changed or became unreadable while reading (tensor T)",
 * whatever failure the zeros caused, and nothing is published.
 *
 * Faults anywhere else, and writes into a guarded mapping (a bug), still crash as before: they
 * go to the handler installed before this one (the default action, or ASan's report). */
#ifndef SM_MAPGUARD_H
#define SM_MAPGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes what lies at byte `offset` of the mapping into buf ("tensor NAME", "the header"). Called
 * outside the handler, while the mapping is registered. */
typedef void (*sm_mapguard_describe_fn)(const void *owner, uint64_t offset, char *buf, size_t n);

/* How many mappings can be guarded at once: far more than the shards of any real model (the
 * largest have a few hundred), and diff opens two models. */
#define SM_MAPGUARD_SLOTS 4096

/* Guard [base, base + len), a read-only mapping of `path` (both must stay valid until
 * sm_mapguard_remove). Installs the SIGBUS/SIGSEGV handler on first use. 0, or -1 when
 * SM_MAPGUARD_SLOTS mappings are already guarded (the caller says so: this module sits below
 * util/diag, whose sm_errmsg reports a tripped guard). */
int sm_mapguard_add(const void *base, size_t len, const char *path, const void *owner,
                    sm_mapguard_describe_fn describe);
/* Stop guarding the mapping at base (before unmapping it). */
void sm_mapguard_remove(const void *base);

/* Called from the signal handler on the first fault: must be async-signal-safe. */
void sm_mapguard_on_trip(void (*hook)(void));
bool sm_mapguard_tripped(void);
/* NULL until a guarded mapping faulted; then the message naming the file and what was read. */
const char *sm_mapguard_message(void);
/* For reads the kernel does on our behalf (a mapped buffer passed to write(2) fails with EFAULT
 * instead of faulting): trip as a fault at addr would, if addr is in a guarded mapping. Returns
 * whether it is. */
bool sm_mapguard_trip_at(const void *addr);

#endif
