#include "util/mapguard.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A fixed table the handler can scan without locks: a slot is claimed with `used`, filled, then
 * published by storing `base` last; removal clears `base` first. */
#define GUARD_SLOTS SM_MAPGUARD_SLOTS

typedef struct {
    atomic_int used;
    _Atomic(uintptr_t) base;
    size_t len;
    const char *path;
    const void *owner;
    sm_mapguard_describe_fn describe;
} guard_slot;

static guard_slot slots[GUARD_SLOTS];
static _Atomic(uintptr_t) fault_addr; /* the first faulting address; 0: none yet */
static void (*trip_hook)(void);
static struct sigaction prev_bus, prev_segv;
static uintptr_t page_size;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

/* The message, composed outside the handler while the faulting mapping is still registered. */
static pthread_mutex_t msg_lock = PTHREAD_MUTEX_INITIALIZER;
static char msg[1536];
static bool msg_done;

/* The slot whose mapping holds a, and its base (read once: the slot may be freed meanwhile). */
static guard_slot *slot_of(uintptr_t a, uintptr_t *base)
{
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t b = atomic_load_explicit(&slots[i].base, memory_order_acquire);
        if (b && a - b < slots[i].len) {
            *base = b;
            return &slots[i];
        }
    }
    return NULL;
}

/* Record the fault and make the rest of the mapping readable zeros (async-signal-safe). */
static bool trip(const guard_slot *s, uintptr_t b, uintptr_t a)
{
    uintptr_t zero = 0;
    atomic_compare_exchange_strong(&fault_addr, &zero, a);
    uintptr_t from = a & ~(page_size - 1), to = (b + s->len + page_size - 1) & ~(page_size - 1);
    if (mmap((void *)from, to - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
        return false;
    if (trip_hook)
        trip_hook();
    return true;
}

/* Not ours: what would have happened without this handler. */
static void chain(int sig, siginfo_t *si, void *ctx)
{
    const struct sigaction *p = sig == SIGBUS ? &prev_bus : &prev_segv;
    if ((p->sa_flags & SA_SIGINFO) && p->sa_sigaction) {
        p->sa_sigaction(sig, si, ctx);
        return;
    }
    if (p->sa_handler != SIG_DFL && p->sa_handler != SIG_IGN) {
        p->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL); /* returning re-runs the access, which now kills the process as before */
}

static void on_fault(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr, b = 0;
    guard_slot *s = slot_of(a, &b);
    /* A SIGSEGV for access rights in a read-only mapping is a write: a bug, not the file. */
    bool ours = s && (sig == SIGBUS || si->si_code != SEGV_ACCERR);
    if (!ours || !trip(s, b, a))
        chain(sig, si, ctx);
}

static void install(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    page_size = pg > 0 ? (uintptr_t)pg : 4096;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK; /* ONSTACK: a stack overflow still reaches ASan's report */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &prev_bus);
    sigaction(SIGSEGV, &sa, &prev_segv);
}

int sm_mapguard_add(const void *base, size_t len, const char *path, const void *owner,
                    sm_mapguard_describe_fn describe)
{
    pthread_once(&install_once, install);
    for (int i = 0; i < GUARD_SLOTS; i++) {
        int free_slot = 0;
        if (!atomic_compare_exchange_strong(&slots[i].used, &free_slot, 1))
            continue;
        slots[i].len = len;
        slots[i].path = path;
        slots[i].owner = owner;
        slots[i].describe = describe;
        atomic_store_explicit(&slots[i].base, (uintptr_t)base, memory_order_release);
        return 0;
    }
    return -1;
}

void sm_mapguard_remove(const void *base)
{
    for (int i = 0; i < GUARD_SLOTS; i++) {
        if (atomic_load(&slots[i].base) != (uintptr_t)base || !base)
            continue;
        uintptr_t a = atomic_load(&fault_addr);
        if (a && a - (uintptr_t)base < slots[i].len)
            (void)sm_mapguard_message(); /* name the file and tensor while they are known */
        atomic_store(&slots[i].base, 0);
        atomic_store(&slots[i].used, 0);
        return;
    }
}

void sm_mapguard_on_trip(void (*hook)(void)) { trip_hook = hook; }

bool sm_mapguard_tripped(void) { return atomic_load(&fault_addr) != 0; }

const char *sm_mapguard_message(void)
{
    uintptr_t a = atomic_load(&fault_addr);
    if (!a)
        return NULL;
    pthread_mutex_lock(&msg_lock);
    if (!msg_done) {
        uintptr_t b = 0;
        guard_slot *s = slot_of(a, &b);
        char what[1024] = "its data";
        if (s && s->describe)
            s->describe(s->owner, a - b, what, sizeof what);
        if (s)
            snprintf(msg, sizeof msg, "%s changed or became unreadable while reading (%s)", s->path, what);
        else
            snprintf(msg, sizeof msg, "an input file changed or became unreadable while it was read");
        msg_done = true;
    }
    pthread_mutex_unlock(&msg_lock);
    return msg;
}

bool sm_mapguard_trip_at(const void *addr)
{
    uintptr_t b = 0;
    guard_slot *s = slot_of((uintptr_t)addr, &b);
    return s && trip(s, b, (uintptr_t)addr);
}
