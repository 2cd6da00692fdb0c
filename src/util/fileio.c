#include "util/fileio.h"
#include "util/fault.h"
#include "util/diag.h"
#include "util/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *sm_read_file(const char *path, size_t max_bytes, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        sm_err("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        sm_err("%s: not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        sm_err("%s: file is %lld bytes, more than the %zu allowed", path, (long long)st.st_size, max_bytes);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = sm_alloc(n + 1, 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    if (n && fread(buf, 1, n, f) != n) {
        sm_err("%s: read failed: %s", path, ferror(f) ? strerror(errno) : "file shrank while reading");
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
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
    size_t part;
    int fault = sm_fault_hit(SM_FAULT_WRITE, n, &part);
    if (fault) {
        if (part)
            fwrite(data, 1, part, f);
        return sm_err("%s: write failed: %s", path, strerror(fault));
    }
    if (n && fwrite(data, 1, n, f) != n)
        return sm_err("%s: write failed: %s", path, strerror(errno ? errno : EIO));
    return 0;
}

int sm_rename(const char *from, const char *to)
{
    int fault = sm_fault_hit(SM_FAULT_RENAME, 0, NULL);
    if (fault) {
        errno = fault;
        return -1;
    }
    return rename(from, to);
}

int sm_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return sm_err("%s: cannot create: %s", path, strerror(errno));
    int rc = sm_fwrite(f, data, n, path);
    if (fclose(f) != 0 && rc == 0)
        rc = sm_err("%s: write failed: %s", path, strerror(errno));
    return rc;
}
