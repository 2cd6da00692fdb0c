#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE, RENAME_EXCHANGE (glibc 2.28+) */
#include "util/publish.h"
#include "util/diag.h"
#include "util/fault.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/signals.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(RENAME_NOREPLACE) && defined(RENAME_EXCHANGE)
#define HAVE_RENAMEAT2_FLAGS 1
#else
#define RENAME_NOREPLACE (1u << 0)
#define RENAME_EXCHANGE (1u << 1)
#endif

char *sm_temp_sibling(const char *final) { return xasprintf("%s.tmp-%ld", final, (long)getpid()); }

/* renameat2 with flags; EINVAL where the file system (or the failure-injection hook, for the
 * tests of the fallbacks) does not support them. */
static int rename_flags(const char *from, const char *to, unsigned flags)
{
    if (sm_fault_no_renameat2()) {
        errno = EINVAL;
        return -1;
    }
#ifdef HAVE_RENAMEAT2_FLAGS
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, flags);
#else /* a C library without renameat2: every publish takes the fallbacks */
    (void)from, (void)to, (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

static bool unsupported(int e) { return e == EINVAL || e == ENOSYS || e == ENOTSUP; }

static int appeared(const char *final)
{
    return sm_err("%s: appeared while this command ran (another command writing the same output?): "
                  "left as it is, and nothing was written there (use --force to replace it)",
                  final);
}

static int cannot(const char *final, int e)
{
    return sm_err("%s: cannot move the finished output into place: %s", final, strerror(e));
}

/* Fallback of no-replace where renameat2 is refused: an exclusive create of the name, then a
 * move that fails rather than replace what someone else put there. */
static int publish_new_fallback(const char *tmp, const char *final, bool is_dir)
{
    if (is_dir) {
        if (mkdir(final, 0777) != 0)
            return errno == EEXIST ? appeared(final) : cannot(final, errno);
        if (rename(tmp, final) != 0) { /* over our own empty directory, unless it was filled */
            int e = errno;
            if (e == ENOTEMPTY || e == EEXIST)
                return appeared(final);
            rmdir(final);
            return cannot(final, e);
        }
        return 0;
    }
    if (link(tmp, final) != 0)
        return errno == EEXIST ? appeared(final) : cannot(final, errno);
    unlink(tmp);
    return 0;
}

static int publish_new(const char *tmp, const char *final, bool is_dir)
{
    if (rename_flags(tmp, final, RENAME_NOREPLACE) == 0)
        return 0;
    int e = errno;
    if (e == EEXIST || e == ENOTEMPTY)
        return appeared(final);
    if (unsupported(e))
        return publish_new_fallback(tmp, final, is_dir);
    return cannot(final, e);
}

/* Fallback of the exchange: the old directory aside, the new one into place, the old one back
 * if that fails. */
static int replace_dir_fallback(const char *tmp, const char *final)
{
    char *old = xasprintf("%s.old-%ld", final, (long)getpid());
    bool moved = rename(final, old) == 0;
    if (!moved && errno != ENOENT) {
        int e = errno;
        free(old);
        return sm_err("%s: cannot move the existing output aside: %s", final, strerror(e));
    }
    if (rename(tmp, final) != 0) {
        int e = errno;
        if (moved)
            rename(old, final);
        free(old);
        return cannot(final, e);
    }
    if (moved)
        sm_remove_tree(old);
    free(old);
    return 0;
}

static int replace_dir(const char *tmp, const char *final)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (rename_flags(tmp, final, RENAME_EXCHANGE) == 0) {
            /* tmp now holds what was at final: only a directory may be replaced */
            struct stat st;
            if (lstat(tmp, &st) == 0 && !S_ISDIR(st.st_mode)) {
                rename_flags(tmp, final, RENAME_EXCHANGE);
                return sm_err("%s: exists and is not a directory: refusing to replace it, even with --force",
                              final);
            }
            if (sm_remove_tree(tmp) != 0)
                sm_warn("%s", sm_errmsg()); /* published; the old output stays under tmp */
            return 0;
        }
        int e = errno;
        if (unsupported(e))
            return replace_dir_fallback(tmp, final);
        if (e != ENOENT)
            return cannot(final, e);
        /* nothing to exchange with: a plain no-replace move, again if something appears now */
        if (rename_flags(tmp, final, RENAME_NOREPLACE) == 0)
            return 0;
        e = errno;
        if (unsupported(e))
            return replace_dir_fallback(tmp, final);
        if (e != EEXIST && e != ENOTEMPTY)
            return cannot(final, e);
    }
    return cannot(final, EBUSY);
}

/* A file replaces a file: rename(2). Through a symbolic link to a regular file, that file; a
 * device, pipe or socket (or a link to one) is never replaced. */
static int replace_file(const char *tmp, const char *final)
{
    struct stat st;
    char *real = NULL;
    if (lstat(final, &st) == 0 && S_ISLNK(st.st_mode)) {
        real = realpath(final, NULL);
        struct stat rs;
        if (!real || stat(real, &rs) != 0 || !S_ISREG(rs.st_mode)) {
            free(real);
            return sm_err("%s: a symbolic link, but not to a regular file: refusing to replace it", final);
        }
    } else if (lstat(final, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        return sm_err("%s: not a regular file: refusing to replace it", final);
    }
    int rc = rename(tmp, real ? real : final) == 0 ? 0 : cannot(final, errno);
    free(real);
    return rc;
}

int sm_publish(const char *tmp, const char *final, bool replace)
{
    if (sm_interrupted()) /* never move anything into place once interrupted */
        return sm_check_interrupt();
    int fault = sm_fault_hit(SM_FAULT_RENAME, 0, NULL);
    if (fault)
        return cannot(final, fault);
    struct stat st;
    if (lstat(tmp, &st) != 0)
        return cannot(final, errno);
    bool is_dir = S_ISDIR(st.st_mode);
    int rc = !replace ? publish_new(tmp, final, is_dir) : is_dir ? replace_dir(tmp, final) : replace_file(tmp, final);
    if (rc == 0)
        sm_fsync_parent(final);
    return rc;
}

/* 'path' for a shell, with embedded quotes escaped. */
static char *shell_quote(const char *path)
{
    size_t n = 3;
    for (const char *s = path; *s; s++)
        n += *s == '\'' ? 4 : 1;
    char *out = xmalloc(n), *d = out;
    *d++ = '\'';
    for (const char *s = path; *s; s++) {
        if (*s == '\'')
            memcpy(d, "'\\''", 4), d += 4;
        else
            *d++ = *s;
    }
    *d++ = '\'';
    *d = '\0';
    return out;
}

/* The PID of a sibling named BASE.tmp-PID or BASE.old-PID, else 0. */
static long sibling_pid(const char *name, const char *base)
{
    size_t nb = strlen(base);
    if (strncmp(name, base, nb) || (strncmp(name + nb, ".tmp-", 5) && strncmp(name + nb, ".old-", 5)))
        return 0;
    const char *digits = name + nb + 5;
    size_t nd = strspn(digits, "0123456789");
    if (nd == 0 || nd > 9 || digits[nd])
        return 0;
    return atol(digits);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void sm_report_stale(const char *final)
{
    char *abs = sm_path_absolute(final);
    size_t n = strlen(abs);
    while (n > 1 && abs[n - 1] == '/')
        abs[--n] = '\0';
    char *slash = strrchr(abs, '/');
    char *dir = !slash ? xstrdup(".") : slash == abs ? xstrdup("/") : xasprintf("%.*s", (int)(slash - abs), abs);
    const char *base = slash ? slash + 1 : abs;
    DIR *d = *base ? opendir(dir) : NULL;
    char **found = NULL;
    size_t n_found = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long pid = sibling_pid(e->d_name, base);
        /* gone: no such process (a live one, or one of another user, EPERM, may still use it) */
        if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            found = xrealloc(found, sizeof *found * (n_found + 1));
            found[n_found++] = sm_path_join(dir, e->d_name);
        }
    }
    if (d)
        closedir(d);
    if (n_found)
        qsort(found, n_found, sizeof *found, cmp_str);
    for (size_t i = 0; i < n_found; i++) {
        char *q = shell_quote(found[i]);
        sm_warn("%s: left behind by an earlier run to %s that did not finish (its process is gone); it may "
                "hold a partial or an old output: remove it with rm -rf -- %s",
                found[i], final, q);
        free(q);
        free(found[i]);
    }
    free(found);
    free(dir);
    free(abs);
}

/* Whether following the symbolic links of path passes through a /proc file-descriptor link
 * (/dev/stdout -> /proc/self/fd/1, /dev/fd/N): such a name means "this open file", so it is written
 * in place, whatever it points to (a pipe, a terminal, or a file the shell opened with >>). */
static bool via_proc_fd(const char *path)
{
    char *cur = xstrdup(path);
    bool found = false;
    for (int hop = 0; hop < 40 && !found; hop++) {
        char *slash = strrchr(cur, '/');
        char *dir = slash ? xasprintf("%.*s", (int)(slash == cur ? 1 : slash - cur), cur) : xstrdup(".");
        char *rdir = realpath(dir, NULL);
        free(dir);
        if (!rdir)
            break;
        char *full = xasprintf("%s/%s", strcmp(rdir, "/") ? rdir : "", slash ? slash + 1 : cur);
        bool in_proc = !strncmp(rdir, "/proc/", 6);
        free(rdir);
        struct stat st;
        char link[PATH_MAX];
        ssize_t n = -1;
        if (lstat(full, &st) == 0 && S_ISLNK(st.st_mode)) {
            if (in_proc)
                found = true;
            else
                n = readlink(full, link, sizeof link - 1);
        }
        free(cur);
        cur = NULL;
        if (n >= 0) {
            link[n] = '\0';
            char *s2 = strrchr(full, '/');
            cur = link[0] == '/' ? xstrdup(link) : xasprintf("%.*s/%s", (int)(s2 - full), full, link);
        }
        free(full);
        if (!cur)
            break;
    }
    free(cur);
    return found;
}

int sm_output_target(const char *path, char **target, bool *direct)
{
    *target = NULL;
    *direct = false;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT)
            return sm_err("%s: %s", path, strerror(errno));
        *target = xstrdup(path); /* a new file */
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        if (stat(path, &st) != 0)
            return sm_err("%s: a symbolic link to nothing (%s): refusing to write through it", path,
                          strerror(errno));
        if (S_ISREG(st.st_mode) && !via_proc_fd(path)) {
            char *real = realpath(path, NULL);
            if (!real)
                return sm_err("%s: cannot resolve the symbolic link: %s", path, strerror(errno));
            *target = real; /* the link's regular file, replaced atomically; the link stays */
            return 0;
        }
        if (S_ISREG(st.st_mode)) { /* /dev/stdout and the like, to a file: write in place */
            *target = xstrdup(path);
            *direct = true;
            return 0;
        }
    }
    if (S_ISDIR(st.st_mode))
        return sm_err("%s: is a directory", path);
    *target = xstrdup(path);
    /* a regular file: replaced atomically; a device, pipe or socket (/dev/null, a FIFO, /dev/stdout
     * to a terminal or pipe): written in place */
    *direct = !S_ISREG(st.st_mode);
    return 0;
}

int sm_write_file_atomic(const char *path, const void *data, size_t n)
{
    char *target;
    bool direct;
    if (sm_output_target(path, &target, &direct))
        return -1;
    if (direct) { /* appending: a no-op on devices and pipes, and keeps what >> already holds */
        int rc = 0;
        FILE *f = sm_interrupted() ? NULL : fopen(target, "ab");
        if (sm_interrupted())
            rc = sm_check_interrupt();
        else if (!f)
            rc = sm_err("%s: cannot open: %s", target, strerror(errno));
        else {
            rc = sm_fwrite(f, data, n, target);
            if (fclose(f) != 0 && rc == 0)
                rc = sm_err("%s: write failed: %s", target, strerror(errno));
        }
        free(target);
        return rc;
    }
    /* a file output replaces the file there (rename(2): atomic, never a moment without one) */
    char *tmp = sm_temp_sibling(target);
    int rc = sm_write_file(tmp, data, n);
    if (!rc)
        rc = sm_publish(tmp, target, true);
    if (rc)
        unlink(tmp);
    free(tmp);
    free(target);
    return rc;
}
