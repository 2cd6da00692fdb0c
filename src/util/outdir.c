#define _XOPEN_SOURCE 700
#include "util/outdir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One pending temporary directory at a time is all the commands need; kept in a plain
 * global so a signal handler can remove it. */
static char pending_tmp[4096];

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

int sm_outdir_begin(sm_outdir *o, const char *final, bool force)
{
    memset(o, 0, sizeof *o);
    size_t n = strlen(final);
    while (n > 1 && final[n - 1] == '/')
        n--;
    o->final = xmalloc(n + 1);
    memcpy(o->final, final, n);
    o->final[n] = '\0';
    o->force = force;
    if (sm_exists(o->final) && !force) {
        sm_err("%s: already exists (use --force to replace it)", o->final);
        free(o->final);
        o->final = NULL;
        return -1;
    }
    o->tmp = xasprintf("%s.tmp-%ld", o->final, (long)getpid());
    sm_remove_tree(o->tmp);
    if (mkdir(o->tmp, 0777) != 0) {
        sm_err("%s: cannot create output directory: %s", o->tmp, strerror(errno));
        free(o->tmp);
        free(o->final);
        o->tmp = o->final = NULL;
        return -1;
    }
    snprintf(pending_tmp, sizeof pending_tmp, "%s", o->tmp);
    return 0;
}

const char *sm_outdir_path(const sm_outdir *o) { return o->tmp; }

int sm_outdir_commit(sm_outdir *o)
{
    char *old = NULL;
    if (sm_exists(o->final)) {
        old = xasprintf("%s.old-%ld", o->final, (long)getpid());
        if (sm_rename(o->final, old) != 0) {
            sm_err("%s: cannot move the existing output aside: %s", o->final, strerror(errno));
            free(old);
            sm_outdir_abort(o);
            return -1;
        }
    }
    if (sm_rename(o->tmp, o->final) != 0) {
        int e = errno;
        if (old)
            rename(old, o->final);
        sm_err("%s: cannot move the finished output into place: %s", o->final, strerror(e));
        free(old);
        sm_outdir_abort(o);
        return -1;
    }
    pending_tmp[0] = '\0';
    if (old) {
        sm_remove_tree(old);
        free(old);
    }
    free(o->tmp);
    free(o->final);
    o->tmp = o->final = NULL;
    return 0;
}

void sm_outdir_abort(sm_outdir *o)
{
    if (o->tmp)
        sm_remove_tree(o->tmp);
    pending_tmp[0] = '\0';
    free(o->tmp);
    free(o->final);
    o->tmp = o->final = NULL;
}

void sm_outdir_cleanup_all(void)
{
    if (pending_tmp[0])
        sm_remove_tree(pending_tmp);
    pending_tmp[0] = '\0';
}
