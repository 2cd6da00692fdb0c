#include "util/iopaths.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/publish.h"

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sm_paths_add(sm_paths *l, const char *what, const char *path)
{
    if (!path || !*path)
        return;
    l->v = xrealloc(l->v, sizeof *l->v * (size_t)(l->n + 1));
    l->v[l->n].what = xstrdup(what);
    l->v[l->n].path = xstrdup(path);
    l->n++;
}

void sm_paths_add_model(sm_paths *l, const char *dir)
{
    if (!dir || !*dir)
        return;
    sm_paths_add(l, "source model", dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char *p = sm_path_join(dir, e->d_name);
            sm_paths_add(l, "source model file", p);
            free(p);
        }
    if (d)
        closedir(d);
}

void sm_paths_free(sm_paths *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].what);
        free(l->v[i].path);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ---- resolving ------------------------------------------------------------------------------ */

typedef struct resolved {
    char *real;      /* absolute, links followed, no "." or ".." */
    bool exists;     /* then dev, ino, mode are the file's (links followed) */
    dev_t dev;
    ino_t ino;
    mode_t mode;
} resolved;

static char *parent_of(const char *abs)
{
    const char *slash = strrchr(abs, '/');
    return !slash || slash == abs ? xstrdup("/") : xasprintf("%.*s", (int)(slash - abs), abs);
}

/* The real path of path, which need not exist: realpath(3) when it does; a dangling link's
 * target; else its resolved parent joined with its last name ("." and ".." applied). */
static char *real_path(const char *path, int depth)
{
    char *r = realpath(path, NULL);
    if (r || depth > 40)
        return r ? r : xstrdup(path);
    struct stat st;
    char link[PATH_MAX];
    ssize_t nl;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && (nl = readlink(path, link, sizeof link - 1)) > 0) {
        link[nl] = '\0';
        const char *slash = strrchr(path, '/');
        char *target = link[0] == '/' || !slash ? xstrdup(link)
                                                : xasprintf("%.*s/%s", (int)(slash - path), path, link);
        char *out = real_path(target, depth + 1);
        free(target);
        return out;
    }
    char *dup = xstrdup(path);
    size_t n = strlen(dup);
    while (n > 1 && dup[n - 1] == '/')
        dup[--n] = '\0';
    char *slash = strrchr(dup, '/');
    const char *base = slash ? slash + 1 : dup;
    char *parent = !slash ? xstrdup(".") : slash == dup ? xstrdup("/") : xasprintf("%.*s", (int)(slash - dup), dup);
    char *rp = strcmp(parent, dup) ? real_path(parent, depth + 1) : xstrdup(parent);
    char *out = !strcmp(base, ".") || !*base ? xstrdup(rp)
              : !strcmp(base, "..")         ? parent_of(rp)
                                            : xasprintf("%s/%s", strcmp(rp, "/") ? rp : "", base);
    free(rp);
    free(parent);
    free(dup);
    return out;
}

static resolved resolve(const char *path)
{
    resolved r = {.real = real_path(path, 0)};
    struct stat st;
    if (stat(r.real, &st) == 0)
        r.exists = true, r.dev = st.st_dev, r.ino = st.st_ino, r.mode = st.st_mode;
    return r;
}

static bool same_file(const resolved *a, const resolved *b)
{
    return !strcmp(a->real, b->real) || (a->exists && b->exists && a->dev == b->dev && a->ino == b->ino);
}

/* Whether `child` lies inside the directory `dir`: by name, or through an ancestor of child
 * that is dir by device and inode (a bind mount, a second name). */
static bool lies_inside(const resolved *child, const resolved *dir)
{
    size_t nd = strlen(dir->real);
    if (!strcmp(dir->real, "/") ? strcmp(child->real, "/") != 0
                                : !strncmp(child->real, dir->real, nd) && child->real[nd] == '/')
        return true;
    if (!dir->exists || !S_ISDIR(dir->mode))
        return false;
    bool found = false;
    char *a = parent_of(child->real);
    for (;;) {
        struct stat st;
        if (stat(a, &st) == 0 && st.st_dev == dir->dev && st.st_ino == dir->ino)
            found = true;
        if (found || !strcmp(a, "/"))
            break;
        char *up = parent_of(a);
        free(a);
        a = up;
    }
    free(a);
    return found;
}

/* ---- the rule ------------------------------------------------------------------------------- */

/* How output o overlaps path p: 0 not at all, 1 the same file, 2 o inside p, 3 p inside o. */
static int overlap(const resolved *o, const resolved *p)
{
    return same_file(o, p) ? 1 : lies_inside(o, p) ? 2 : lies_inside(p, o) ? 3 : 0;
}

/* Devices, pipes and sockets are written in place, never replaced. */
static bool written_in_place(const resolved *r) { return r->exists && !S_ISREG(r->mode) && !S_ISDIR(r->mode); }

static const char *const verbs[] = {"", "replace", "be written inside", "contain"};

static int check_inputs(const sm_path_entry *oe, const resolved *o, const sm_paths *inputs, const resolved *in)
{
    /* the closest relation first: an output that is an input's file, before the directory
     * that file lies in */
    for (int kind = 1; kind <= 3; kind++)
        for (int i = 0; i < inputs->n; i++)
            if (overlap(o, &in[i]) == kind)
                return sm_err("%s: the output would %s the %s %s, which is never modified; choose another path",
                              oe->path, verbs[kind], inputs->v[i].what, inputs->v[i].path);
    return 0;
}

static int check_outputs(const sm_paths *outputs, const resolved *out, int self)
{
    for (int j = self + 1; j < outputs->n; j++) {
        int kind = written_in_place(&out[j]) ? 0 : overlap(&out[self], &out[j]);
        if (kind)
            return sm_err("%s: the output would %s the %s %s, another output of this command; choose another path",
                          outputs->v[self].path, verbs[kind], outputs->v[j].what, outputs->v[j].path);
    }
    return 0;
}

int sm_check_output_paths(const sm_paths *inputs, const sm_paths *outputs)
{
    resolved *in = xcalloc((size_t)inputs->n + 1, sizeof *in), *out = xcalloc((size_t)outputs->n + 1, sizeof *out);
    for (int i = 0; i < inputs->n; i++)
        in[i] = resolve(inputs->v[i].path);
    for (int j = 0; j < outputs->n; j++)
        out[j] = resolve(outputs->v[j].path);
    int rc = 0;
    /* against the inputs first: that message names what is at stake */
    for (int j = 0; j < outputs->n && !rc; j++)
        if (!written_in_place(&out[j]))
            rc = check_inputs(&outputs->v[j], &out[j], inputs, in);
    for (int j = 0; j < outputs->n && !rc; j++)
        if (!written_in_place(&out[j]))
            rc = check_outputs(outputs, out, j);
    for (int j = 0; j < outputs->n && !rc; j++)
        sm_report_stale(outputs->v[j].path);
    for (int i = 0; i < inputs->n; i++)
        free(in[i].real);
    for (int j = 0; j < outputs->n; j++)
        free(out[j].real);
    free(in);
    free(out);
    return rc;
}
