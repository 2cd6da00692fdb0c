#include "util/diag.h"
#include "util/mapguard.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SM_ERR_CAP 4096

static _Thread_local char err_buf[SM_ERR_CAP];
const char *sm_progname = "submoe";

int sm_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int sm_err_prefix(const char *fmt, ...)
{
    char prefix[1024], old[SM_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t n = strlen(prefix);
    /* Context added twice on the way up (a loader and its caller both name the layer) is said once. */
    if (!strncmp(err_buf, prefix, n) && err_buf[n] == ':' && err_buf[n + 1] == ' ')
        return -1;
    memcpy(old, err_buf, sizeof old);
    if (n > sizeof err_buf - 3)
        n = sizeof err_buf - 3;
    memcpy(err_buf, prefix, n);
    memcpy(err_buf + n, ": ", 2);
    size_t room = sizeof err_buf - n - 3, len = strlen(old);
    if (len > room)
        len = room;
    memcpy(err_buf + n + 2, old, len);
    err_buf[n + 2 + len] = '\0';
    return -1;
}

/* Once a mapped input changed under us, whatever failed after it (a cancelled step, a refused
 * write, a check tripped by the zeros read) failed because of it: report that. */
const char *sm_errmsg(void)
{
    const char *changed = sm_mapguard_message();
    return changed ? changed : err_buf;
}
void sm_err_clear(void) { err_buf[0] = '\0'; }

void sm_report(void)
{
    const char *msg = sm_errmsg();
    fprintf(stderr, "%s: %s\n", sm_progname, msg[0] ? msg : "unknown error");
}

static void (*warn_handler)(const char *msg, void *ctx);
static void *warn_ctx;

void sm_warn_handler_set(void (*handler)(const char *msg, void *ctx), void *ctx)
{
    warn_handler = handler;
    warn_ctx = ctx;
}

void sm_warn(const char *fmt, ...)
{
    char msg[SM_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (warn_handler)
        warn_handler(msg, warn_ctx);
    else
        fprintf(stderr, "%s: warning: %s\n", sm_progname, msg);
}

void sm_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", sm_progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}
