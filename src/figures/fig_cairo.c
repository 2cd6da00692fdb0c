/* fig_cairo: see fig_cairo.h. This file calls the table's members by their field names (it
 * defines the table; the call macros of the header are undone here). */
#include "config.h"

#include "figures/fig_cairo.h"

#include "util/diag.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

fig_cairo_api fig_cairo;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc = -1;
static char load_error[320];

static void load(void)
{
    void *h = dlopen(SM_CAIRO_SONAME, RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "%s: install the Debian package libcairo2",
                 e ? e : SM_CAIRO_SONAME ": cannot be loaded");
        return;
    }
#define FIG_CAIRO_LOAD(f)                                                                        \
    if (!(*(void **)&fig_cairo.p_##f = dlsym(h, #f))) {                                          \
        snprintf(load_error, sizeof load_error, SM_CAIRO_SONAME " has no " #f " (cairo 1.16 or later is needed)"); \
        return;                                                                                  \
    }
    FIG_CAIRO_FUNCS(FIG_CAIRO_LOAD)
#undef FIG_CAIRO_LOAD
    load_rc = 0;
}

int fig_cairo_load(void)
{
    pthread_once(&once, load);
    return load_rc ? sm_err("%s", load_error) : 0;
}

int fig_cairo_loaded(void)
{
    return load_rc == 0;
}

void fig_cairo_release(void)
{
    if (load_rc)
        return;
    fig_cairo.p_cairo_debug_reset_static_data(); /* drops cairo's font faces, then fontconfig's caches */
    void *fc = dlopen("libfontconfig.so.1", RTLD_LAZY | RTLD_NOLOAD);
    void (*fini)(void) = NULL;
    if (fc && (*(void **)&fini = dlsym(fc, "FcFini")))
        fini();
    if (fc)
        dlclose(fc);
}
