#include "util/signals.h"
#include "util/diag.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t received;
/* A plain volatile int for sm_monitor.cancel (sig_atomic_t is int on every platform we build on;
 * the handler only ever stores 1 into it). */
static volatile int cancel_flag;

static void on_signal(int sig)
{
    if (!received)
        received = sig;
    cancel_flag = 1;
}

void sm_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int sm_interrupted(void) { return received; }

int sm_check_interrupt(void)
{
    if (!received)
        return 0;
    return sm_err("interrupted by signal %d (%s)", (int)received, strsignal(received));
}

const sm_monitor *sm_signals_monitor(void)
{
    static const sm_monitor mon = {NULL, NULL, &cancel_flag};
    return &mon;
}

const char *sm_signals_errmsg(void)
{
    static char buf[96];
    if (!received)
        return sm_errmsg();
    snprintf(buf, sizeof buf, "interrupted by signal %d (%s)", (int)received, strsignal(received));
    return buf;
}

void sm_signals_reraise(void)
{
    int sig = received;
    if (!sig)
        return;
    signal(sig, SIG_DFL);
    raise(sig);
}
