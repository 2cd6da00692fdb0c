#define _XOPEN_SOURCE 700
#include "util/outdir.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/publish.h"
#include "util/signals.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    struct stat st;
    if (lstat(o->final, &st) == 0) {
        const char *why = NULL;
        if (!force)
            why = "already exists (use --force to replace it)";
        else if (S_ISLNK(st.st_mode)) {
            /* --force through a symbolic link: replace the directory it points to, keep the link */
            char *real = realpath(o->final, NULL);
            struct stat rs;
            if (!real || stat(real, &rs) != 0 || !S_ISDIR(rs.st_mode))
                why = "is a symbolic link, but not to a directory: refusing to replace it";
            else {
                free(o->final);
                o->final = real;
                real = NULL;
            }
            free(real);
        } else if (!S_ISDIR(st.st_mode))
            why = "exists and is not a directory: refusing to replace it, even with --force";
        if (why) {
            sm_err("%s: %s", o->final, why);
            free(o->final);
            o->final = NULL;
            return -1;
        }
    }
    o->tmp = sm_temp_sibling(o->final);
    sm_remove_tree(o->tmp);
    if (mkdir(o->tmp, 0777) != 0) {
        sm_err("%s: cannot create output directory: %s", o->tmp, strerror(errno));
        free(o->tmp);
        free(o->final);
        o->tmp = o->final = NULL;
        return -1;
    }
    sm_signals_note_temp(o->tmp);
    return 0;
}

const char *sm_outdir_path(const sm_outdir *o) { return o->tmp; }

int sm_outdir_commit(sm_outdir *o)
{
    /* The files were flushed as they were closed; their directory entries now. Then into place:
     * never over an output that appeared meanwhile without force; exchanged with force. */
    if (sm_fsync_dir(o->tmp) != 0 || sm_publish(o->tmp, o->final, o->force) != 0) {
        sm_outdir_abort(o);
        return -1;
    }
    sm_signals_note_temp(NULL);
    free(o->tmp);
    free(o->final);
    o->tmp = o->final = NULL;
    return 0;
}

void sm_outdir_abort(sm_outdir *o)
{
    if (o->tmp)
        sm_remove_tree(o->tmp);
    sm_signals_note_temp(NULL);
    free(o->tmp);
    free(o->final);
    o->tmp = o->final = NULL;
}
