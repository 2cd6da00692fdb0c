/* limits: running under an address-space limit (see limits.h). */
#include "util/limits.h"

#include <cblas.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
/* OpenBLAS's per-thread work buffer: BUFFER_SIZE = 32 << 22 on x86_64 (common_x86_64.h, 0.3.21),
 * fixed at build time; no environment variable changes it. */
#define BLAS_BUFFER_BYTES (128 * MIB)
/* Measured (ulimit -v bisected, tests/test_limits.sh): the smallest limits at which the commands
 * still succeed on the default synthetic model (synth --arch mixtral): inspect and synth 47 MiB
 * (what the program and its libraries map at start-up, 46 MiB, and a little work), eval and plan
 * 183 MiB (that and the BLAS buffer). Below these, refuse at once; bigger models need more, and an
 * allocation that does not fit then fails with "out of memory". */
#define MIN_PLAIN_BYTES (48 * MIB)
#define MIN_BLAS_BYTES (184 * MIB)
/* What a command needs beyond what is mapped when it starts (libraries may be bigger elsewhere). */
#define WORK_MARGIN_BYTES (2 * MIB)

/* The soft RLIMIT_AS in bytes, 0 if none. */
static uint64_t address_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur == RLIM_INFINITY)
        return 0;
    return (uint64_t)r.rlim_cur;
}

/* The BLAS threads asked for in envp, in OpenBLAS's order of precedence (0: none). (getenv does
 * not work yet where this is called: the C library has not set up environ.) */
static int blas_threads_asked(char **envp)
{
    static const char *const names[] = {"OPENBLAS_NUM_THREADS=", "GOTO_NUM_THREADS=", "OMP_NUM_THREADS="};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (char **e = envp; *e; e++)
            if (!strncmp(*e, names[i], strlen(names[i])) && atoi(*e + strlen(names[i])) > 0)
                return atoi(*e + strlen(names[i]));
    return 0;
}

/* Runs before any shared library's constructor, so before OpenBLAS reads its thread count and
 * starts its threads: give it only the threads whose buffers and stacks fit under the limit.
 * setenv here would be undone (the C library's own initialisation, which comes after, resets
 * environ to the original array), so the program executes itself again with
 * OPENBLAS_NUM_THREADS set; the second start finds it fitting and goes on. If that fails
 * (no /proc), it goes on as it is. */
static void size_blas_threads(int argc, char **argv, char **envp)
{
    (void)argc;
    uint64_t limit = address_limit();
    if (!limit || !envp)
        return;
    struct rlimit st;
    uint64_t stack = getrlimit(RLIMIT_STACK, &st) == 0 && st.rlim_cur != RLIM_INFINITY ? (uint64_t)st.rlim_cur : 8 * MIB;
    uint64_t per_thread = BLAS_BUFFER_BYTES + stack;
    uint64_t fit = 1 + (limit > MIN_BLAS_BYTES ? (limit - MIN_BLAS_BYTES) / per_thread : 0);
    int asked = blas_threads_asked(envp);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t wanted = asked ? (uint64_t)asked : cpus > 0 ? (uint64_t)cpus : 1;
    if (wanted <= fit && (asked || wanted == 1))
        return; /* what OpenBLAS would start fits */
    static const char name[] = "OPENBLAS_NUM_THREADS=";
    static char entry[48];
    snprintf(entry, sizeof entry, "%s%" PRIu64, name, wanted < fit ? wanted : fit);
    size_t n = 0;
    while (envp[n])
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(envp[i], name, sizeof name - 1))
            env[k++] = envp[i];
    env[k++] = entry;
    env[k] = NULL;
    execve("/proc/self/exe", argv, env);
    free(env);
}

__attribute__((section(".preinit_array"), used)) static void (*const sm_preinit_blas)(int, char **, char **) =
    size_blas_threads;

/* Bytes mapped by the process now (VmSize), 0 if unknown. */
static uint64_t mapped_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)pages * (uint64_t)(page > 0 ? page : 4096);
}

/* Make OpenBLAS map the calling thread's buffer now, while it fits for certain: OpenBLAS keeps a
 * buffer mapped once it has one, and retries a mapping that fails forever. -1 if it cannot fit. */
static int reserve_blas_buffer(void)
{
    size_t n = BLAS_BUFFER_BYTES + 2 * (size_t)sysconf(_SC_PAGESIZE);
    void *probe = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED)
        return -1;
    munmap(probe, n);
    /* 128^3 is past OpenBLAS's small-matrix path (at most 100^3), which needs no buffer. */
    enum { N = 128 };
    static float a[N * N], c[N * N];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, a, N, 0.0f, c, N);
    return 0;
}

int sm_limits_check(const char *name, bool uses_blas)
{
    uint64_t limit = address_limit();
    if (!limit)
        return 0;
    uint64_t need = uses_blas ? MIN_BLAS_BYTES : MIN_PLAIN_BYTES;
    uint64_t now = mapped_now() + WORK_MARGIN_BYTES + (uses_blas ? BLAS_BUFFER_BYTES : 0);
    if (now > need)
        need = now;
    if (limit >= need && (!uses_blas || reserve_blas_buffer() == 0))
        return 0;
    if (limit >= need) /* the buffer did not fit after all (something else is mapped): ask for more */
        need = limit + BLAS_BUFFER_BYTES;
    fprintf(stderr, "submoe%s%s: the address-space limit (ulimit -v) of %" PRIu64 " KiB is too small: at least %" PRIu64
            " MiB is needed\n", name ? " " : "", name ? name : "", limit / 1024, (need + MIB - 1) / MIB);
    return -1;
}

int sm_limits_threads(int wanted)
{
    return address_limit() && wanted > 1 ? 1 : wanted;
}

unsigned long long sm_limits_address_kib(void)
{
    return (unsigned long long)(address_limit() / 1024);
}
