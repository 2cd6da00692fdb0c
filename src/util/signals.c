#include "util/signals.h"
#include "util/diag.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t received;

static void on_signal(int sig)
{
    if (!received)
        received = sig;
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

void sm_signals_reraise(void)
{
    int sig = received;
    if (!sig)
        return;
    signal(sig, SIG_DFL);
    raise(sig);
}
