/* test_tui_queue: the workbench's job queue (tui_worker.c) lets a user's request pre-empt a running
 * background preview (issue 16 item 6): the preview is cancelled through the monitor's flag and
 * queued again first among the background work; the very job asked for, another background job
 * and a second user job do not cancel anything more; Esc still drops the background work. */
#include "testutil.h"
#include "tui/tui_worker.h"

static tui_app a; /* large: not on the stack */

static void running(tui_job j)
{
    tui_state_free_data(&a.s); /* the messages logged so far (Esc logs one) */
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    a.running = j;
    a.running_now = true;
}

static bool queued(int at, int kind, int layer, bool background)
{
    return at < a.nq && a.q[at].kind == kind && a.q[at].layer == layer && a.q[at].background == background;
}

int main(void)
{
    tui_job bg3 = {TUI_JOB_PREVIEW, 3, 0, false, true}, bg4 = {TUI_JOB_PREVIEW, 4, 0, false, true};
    tui_job spectrum = {TUI_JOB_SPECTRUM, 1, 0, false, false}, preview1 = {TUI_JOB_PREVIEW, 1, 0, false, false};

    running(bg3);
    tui_push(&a, bg4);
    CHECK(!a.cancel && !a.preempted && a.nq == 1, "a background job queues behind a running one");
    tui_push(&a, spectrum);
    CHECK(a.cancel && a.preempted, "a spectrum cancels the running background preview");
    CHECK(a.nq == 3 && queued(0, TUI_JOB_SPECTRUM, 1, false) && queued(1, TUI_JOB_PREVIEW, 3, true) &&
              queued(2, TUI_JOB_PREVIEW, 4, true),
          "... which runs again right after it, before the other background work");
    a.cancel = 0;
    tui_push(&a, preview1);
    CHECK(!a.cancel && a.nq == 4 && queued(1, TUI_JOB_PREVIEW, 1, false) && queued(2, TUI_JOB_PREVIEW, 3, true),
          "a second user job while the first pre-emption is pending queues behind the first, cancels nothing");
    tui_cancel_work(&a);
    CHECK(a.cancel && a.nq == 2 && queued(0, TUI_JOB_SPECTRUM, 1, false) && queued(1, TUI_JOB_PREVIEW, 1, false),
          "Esc drops the background work, the pre-empted preview too");

    running(bg3);
    tui_push(&a, (tui_job){TUI_JOB_PREVIEW, 3, 0, false, false});
    CHECK(!a.cancel && !a.preempted, "asking for the preview that is running does not cancel it");
    tui_push(&a, (tui_job){TUI_JOB_PREVIEW, 3, 0, true, false});
    CHECK(a.cancel && a.preempted, "... unless forced (an edit made it stale)");

    running(spectrum);
    a.running.background = false;
    tui_push(&a, preview1);
    CHECK(!a.cancel && !a.preempted && a.nq == 1, "a running user job is never pre-empted");
    tui_state_free_data(&a.s);
    return tu_failures ? 1 : 0;
}
