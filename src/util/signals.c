#include "util/signals.h"
#include "util/diag.h"
#include "util/mapguard.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t received;
/* A plain volatile int for sm_monitor.cancel (sig_atomic_t is int on every platform we build on;
 * the handler only ever stores 1 into it). */
static volatile int cancel_flag;

/* What a second signal needs, prepared outside the handler: the terminal's settings before the
 * workbench changed them, and the temporary output that will be left behind. */
static struct termios saved_tio;
static volatile sig_atomic_t have_tio, temp_len;
static char temp_path[1024];

static void say(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w, n -= (size_t)w;
    }
}

/* The second signal: the first one's orderly stop is stuck in a step that cannot be cancelled
 * (one long LAPACK call). Only async-signal-safe calls from here on. */
static void quit_at_once(int sig)
{
    if (have_tio) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
        /* to the terminal the workbench drew on: leave the alternate screen, show the cursor */
        static const char restore[] = "\033[?1049l\033[?25h\r\n";
        say(STDOUT_FILENO, restore, sizeof restore - 1);
    }
    static const char msg[] = "submoe: second signal: quitting at once";
    say(STDERR_FILENO, msg, sizeof msg - 1);
    if (temp_len) {
        static const char left[] = "; left behind: ";
        say(STDERR_FILENO, left, sizeof left - 1);
        say(STDERR_FILENO, temp_path, (size_t)temp_len);
    }
    say(STDERR_FILENO, "\n", 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_signal(int sig)
{
    if (received) {
        quit_at_once(sig);
        return;
    }
    received = sig;
    cancel_flag = 1;
}

void sm_signals_save_terminal(void)
{
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0)
        have_tio = 1;
}

void sm_signals_note_temp(const char *path)
{
    temp_len = 0; /* the handler never reads a half-copied path */
    if (!path)
        return;
    size_t n = strlen(path);
    if (n >= sizeof temp_path)
        return;
    memcpy(temp_path, path, n);
    temp_len = (sig_atomic_t)n;
}

/* A mapped input changed under us (util/mapguard): stop like a signal does, minus the exit status. */
static void on_input_changed(void) { cancel_flag = 1; }

void sm_signals_install(void)
{
    sm_mapguard_on_trip(on_input_changed);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A file-size limit (ulimit -f) is a write error like a full disk: with SIGXFSZ ignored the
     * write fails with EFBIG, and the writers report it and remove their temporaries. */
    signal(SIGXFSZ, SIG_IGN);
}

int sm_interrupted(void) { return received ? received : sm_mapguard_tripped() ? SIGBUS : 0; }

int sm_check_interrupt(void)
{
    if (sm_mapguard_tripped())
        return sm_err("%s", sm_mapguard_message());
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
    if (!received || sm_mapguard_tripped())
        return sm_errmsg(); /* which is the changed input's message once one changed */
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
