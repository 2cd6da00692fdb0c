/* util/mapguard: a mapped safetensors file truncated while it is read. The read completes (zeros),
 * the message names the file and the tensor (also once the file is closed), long work is
 * cancelled and nothing can be published, as after a signal. Faults that are not a guarded
 * file's still crash: a truncated mapping nobody registered, a write into a guarded mapping. */
#include "model/st.h"
#include "fixture.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mapguard.h"
#include "util/mem.h"
#include "util/publish.h"
#include "util/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SMALL 1024
#define LARGE (256 * 1024)

static char path[256], other[256];

/* tensor "a" [SMALL] then "b" [LARGE], f32 */
static int write_file(const char *p)
{
    st_writer *w = st_writer_new();
    int64_t sa = SMALL, sb = LARGE;
    float *data = xcalloc(LARGE, sizeof *data);
    for (int i = 0; i < LARGE; i++)
        data[i] = 1.0f + (float)i;
    int rc = st_writer_declare(w, "a", SM_DT_F32, 1, &sa) || st_writer_declare(w, "b", SM_DT_F32, 1, &sb) ||
             st_writer_begin(w, p) || st_writer_write_f32(w, data, SMALL) || st_writer_write_f32(w, data, LARGE) ||
             st_writer_finish(w);
    st_writer_free(w);
    free(data);
    return rc;
}

/* Run fn in a child; whether the child died of a signal or a sanitizer's report (not exit 0). */
static char how[64];
static bool child_crashes(void (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        snprintf(how, sizeof how, "signal %d", WTERMSIG(st));
    else
        snprintf(how, sizeof how, "exit %d", WEXITSTATUS(st));
    return !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A truncated mapping that is not registered: SIGBUS as before (the guard is installed: open a
 * guarded file first). */
static void read_unguarded(void)
{
    st_file *g = st_open(path);
    int fd = open(other, O_RDONLY);
    volatile const unsigned char *m = mmap(NULL, LARGE * 4, PROT_READ, MAP_PRIVATE, fd, 0);
    if (!g || m == MAP_FAILED || ftruncate(open(other, O_RDWR), 4096) != 0)
        _exit(0);
    (void)m[LARGE * 4 - 1];
}

/* Writing into a guarded (read-only) mapping is a bug: SIGSEGV as before. */
static void write_guarded(void)
{
    st_file *g = st_open(path);
    if (!g)
        _exit(0);
    *(volatile unsigned char *)st_find(g, "b")->data = 1;
}

int main(void)
{
    char *dir = fx_tmpdir("test_mapguard");
    if (!dir)
        return 1;
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    snprintf(other, sizeof other, "%s/other.bin", dir);
    sm_signals_install();
    CHECK(write_file(path) == 0, "wrote %s: %s", path, sm_errmsg());
    CHECK(write_file(other) == 0, "wrote %s", other);

    CHECK(child_crashes(read_unguarded), "a truncated mapping nobody guards still crashes (%s)", how);
    CHECK(child_crashes(write_guarded), "a write into a guarded mapping still crashes (%s)", how);
    CHECK(!sm_mapguard_tripped() && sm_mapguard_message() == NULL, "nothing tripped in this process");

    st_file *f = st_open(path);
    CHECK(f != NULL, "st_open: %s", sm_errmsg());
    if (!f)
        return tu_done();
    const sm_tensor *a = st_find(f, "a"), *b = st_find(f, "b");
    float *buf = xcalloc(LARGE, sizeof *buf);
    memcpy(buf, a->data, SMALL * sizeof *buf);
    CHECK(buf[SMALL - 1] == (float)SMALL && !sm_mapguard_tripped(), "reads before the change are the data");

    /* cut the file in the middle of "b", the last tensor */
    CHECK(truncate(path, (off_t)(st_file_size(f) - LARGE * 2)) == 0, "truncated to half of b");
    memcpy(buf, b->data, LARGE * sizeof *buf); /* SIGBUS without the guard */
    CHECK(sm_mapguard_tripped(), "the read completed and tripped the guard");
    CHECK(buf[0] == 1.0f && buf[LARGE - 1] == 0.0f, "what was still there is read, the rest is zeros");
    CHECK(sm_interrupted() != 0 && sm_monitor_cancelled(sm_signals_monitor()),
          "long work is cancelled, as by a signal");
    CHECK(sm_check_interrupt() == -1, "writers refuse: %s", sm_errmsg());
    CHECK(sm_publish(path, other, true) == -1 && access(path, F_OK) == 0, "nothing is moved into place");
    st_close(f); /* the message is composed before the mapping goes */
    char want[512];
    snprintf(want, sizeof want, "%s changed or became unreadable while reading (tensor b)", path);
    CHECK_STR(sm_mapguard_message(), want, "the message names the file and tensor");
    sm_err("some later failure");
    CHECK_STR(sm_errmsg(), want, "and is what any later failure reports");
    free(buf);
    fx_tmpdir_remove(dir);
    return tu_done();
}
