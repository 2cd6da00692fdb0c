/* outdir: atomic creation of an output directory. Everything is written into a temporary
 * sibling directory which is published (util/publish.h) only when complete; a failure or an
 * interrupt (util/signals.h: the writers fail, the caller aborts) removes it, so a reader
 * never sees a partial output. */
#ifndef SM_OUTDIR_H
#define SM_OUTDIR_H

#include <stdbool.h>

typedef struct sm_outdir {
    char *final;
    char *tmp;
    bool force;
} sm_outdir;

/* Refuses an existing `final` unless force; even with force, refuses to replace anything but a
 * directory (a regular file, a device), and replaces the directory a symbolic link points to, not
 * the link. Creates the temporary directory. A signal stops the commit (sm_publish). */
int sm_outdir_begin(sm_outdir *o, const char *final, bool force);
const char *sm_outdir_path(const sm_outdir *o);   /* where to write now */
/* sm_publish(tmp, final, force): without force, an output that appeared at final since begin
 * is left alone and the commit fails; with force it is exchanged. Aborts on failure. */
int sm_outdir_commit(sm_outdir *o);
void sm_outdir_abort(sm_outdir *o);

#endif
