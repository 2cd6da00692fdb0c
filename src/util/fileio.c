#define _XOPEN_SOURCE 700 /* nftw */
#include "util/fileio.h"
#include "util/fault.h"
#include "util/diag.h"
#include "util/mapguard.h"
#include "util/mem.h"
#include "util/signals.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
         : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" : "an unusual file";
}

/* A failed call: a signal that interrupted it is reported as the signal, not "Interrupted system
 * call". */
static int input_error(const char *path, const char *what)
{
    if (errno == EINTR && sm_interrupted())
        return sm_check_interrupt();
    return sm_err("%s: %s: %s", path, what, strerror(errno));
}

int sm_open_input(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return input_error(path, "cannot open");
    /* Before open(): opening a FIFO blocks until a writer comes, a device may act on being opened. */
    if (!S_ISREG(st.st_mode))
        return sm_err("%s: not a regular file (%s)", path, kind_of(st.st_mode));
    int fd;
    do /* O_NONBLOCK: it may have been replaced by a FIFO since the stat */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    while (fd < 0 && errno == EINTR && !sm_interrupted());
    if (fd < 0)
        return input_error(path, "cannot open");
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int rc = S_ISREG(st.st_mode) ? input_error(path, "cannot open")
                                     : sm_err("%s: not a regular file (%s)", path, kind_of(st.st_mode));
        close(fd);
        return rc;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        input_error(path, "cannot open");
        close(fd);
        return -1;
    }
    return fd;
}

char *sm_read_file(const char *path, size_t max_bytes, size_t *len_out)
{
    int fd = sm_open_input(path);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        input_error(path, "cannot read");
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        sm_err("%s: file is %lld bytes, more than the %zu allowed", path, (long long)st.st_size, max_bytes);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = sm_alloc(n + 1, 1);
    if (!buf) {
        close(fd);
        return NULL;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR && !sm_interrupted())
            continue;
        if (r <= 0) {
            if (r < 0)
                input_error(path, "read failed");
            else
                sm_err("%s: read failed: file shrank while reading", path);
            free(buf);
            close(fd);
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if (len_out)
        *len_out = n;
    return buf;
}

bool sm_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool sm_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int sm_file_size(const char *path, uint64_t *out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sm_err("%s: %s", path, strerror(errno));
    *out = (uint64_t)st.st_size;
    return 0;
}

uint64_t sm_dir_size(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        char *p = sm_path_join(path, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0)
            total += S_ISDIR(st.st_mode) ? sm_dir_size(p) : S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        free(p);
    }
    closedir(d);
    return total;
}

char *sm_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    if (n && dir[n - 1] == '/')
        return xasprintf("%s%s", dir, name);
    return xasprintf("%s/%s", dir, name);
}

const char *sm_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

char *sm_path_absolute(const char *path)
{
    char *real = realpath(path, NULL);
    if (real)
        return real;
    char *dup = xstrdup(path), *slash = strrchr(dup, '/'), *out = NULL;
    if (slash) {
        const char *base = slash + 1;
        *slash = 0;
        char *rdir = realpath(slash == dup ? "/" : dup, NULL);
        if (rdir)
            out = xasprintf("%s/%s", strcmp(rdir, "/") ? rdir : "", base);
        free(rdir);
    } else {
        char *cwd = realpath(".", NULL);
        if (cwd)
            out = xasprintf("%s/%s", cwd, path);
        free(cwd);
    }
    if (!out) { /* a directory part that does not exist either */
        char cwd[PATH_MAX];
        out = path[0] != '/' && getcwd(cwd, sizeof cwd) ? xasprintf("%s/%s", cwd, path) : xstrdup(path);
    }
    free(dup);
    return out;
}

int sm_mkdirs(const char *path)
{
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            sm_err("%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        rc = sm_err("%s: cannot create directory: %s", p, strerror(errno));
    free(p);
    return rc;
}

int sm_fwrite(FILE *f, const void *data, size_t n, const char *path)
{
    if (sm_interrupted()) /* a signal arrived: stop writing (the caller removes its temporary) */
        return sm_check_interrupt();
    size_t part;
    int fault = sm_fault_hit(SM_FAULT_WRITE, n, &part);
    if (fault) {
        if (part)
            fwrite(data, 1, part, f);
        return sm_err("%s: write failed: %s", path, strerror(fault));
    }
    if (n && fwrite(data, 1, n, f) != n) {
        /* EFAULT: data lies in a mapped input that changed (the kernel read it, so no fault) */
        if (errno == EFAULT && sm_mapguard_trip_at(data))
            return sm_check_interrupt();
        return sm_err("%s: write failed: %s", path, strerror(errno ? errno : EIO));
    }
    return 0;
}

int sm_fsync_fd(int fd, const char *path)
{
    if (fsync(fd) == 0 || errno == EINVAL || errno == EROFS || errno == ENOTSUP)
        return 0;
    return sm_err("%s: cannot flush to disk: %s", path, strerror(errno));
}

int sm_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return sm_err("%s: cannot open to flush: %s", dir, strerror(errno));
    int rc = sm_fsync_fd(fd, dir);
    close(fd);
    return rc;
}

void sm_fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? xstrdup(".") : slash == path ? xstrdup("/") : xasprintf("%.*s", (int)(slash - path), path);
    (void)sm_fsync_dir(dir); /* best effort: the rename it follows has already published */
    free(dir);
}

int sm_write_file(const char *path, const void *data, size_t n)
{
    if (sm_interrupted())
        return sm_check_interrupt();
    FILE *f = fopen(path, "wb");
    if (!f)
        return sm_err("%s: cannot create: %s", path, strerror(errno));
    int rc = sm_fwrite(f, data, n, path);
    if (rc == 0 && fflush(f) != 0)
        rc = sm_err("%s: write failed: %s", path, strerror(errno));
    if (rc == 0)
        rc = sm_fsync_fd(fileno(f), path);
    if (fclose(f) != 0 && rc == 0)
        rc = sm_err("%s: write failed: %s", path, strerror(errno));
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int sm_remove_tree(const char *path)
{
    if (!sm_exists(path))
        return 0;
    if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0)
        return sm_err("%s: cannot remove: %s", path, strerror(errno));
    return 0;
}
