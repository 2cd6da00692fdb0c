/* diag: one error message per failure, carried up to the command that prints it.
 *
 * Functions that can fail return a status (0 / -1) or NULL and leave the reason in a
 * thread-local buffer with sm_err(); callers add context with sm_err_prefix() and the
 * command prints sm_errmsg() once. Worker threads have their own buffer. */
#ifndef SM_DIAG_H
#define SM_DIAG_H

#include <stddef.h>

#if defined(__GNUC__)
#define SM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SM_PRINTF(a, b)
#endif

/* Replace the current error message. Always returns -1 so `return sm_err(...)` reads well. */
int sm_err(const char *fmt, ...) SM_PRINTF(1, 2);
/* Prepend "context: " to the current message (e.g. the file name), unless the message already
 * starts with exactly that context. Returns -1. */
int sm_err_prefix(const char *fmt, ...) SM_PRINTF(1, 2);
/* Message of the last failure on this thread ("" if none); once a mapped input file changed
 * while it was read (util/mapguard.h), that message instead. */
const char *sm_errmsg(void);
void sm_err_clear(void);

/* Program name for messages; set once in main. */
extern const char *sm_progname;
/* Print "submoe: <msg>" to stderr. */
void sm_report(void);
/* A warning that does not stop the command: "submoe: warning: <formatted>" on stderr, or, when a
 * handler is set (the workbench, whose screen owns the terminal), handed to it. Any thread. */
void sm_warn(const char *fmt, ...) SM_PRINTF(1, 2);
void sm_warn_handler_set(void (*handler)(const char *msg, void *ctx), void *ctx);
/* Print "submoe: <formatted>" and exit(1). For impossible states and OOM only. */
void sm_die(const char *fmt, ...) SM_PRINTF(1, 2) __attribute__((noreturn));

#endif
