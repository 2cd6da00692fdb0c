/* test_tui_fuzz: random keys into the workbench, in-process (issue 14 §1). Every key of the help,
 * the editing keys, the dialogs' text fields and random bytes, interleaved with the worker's
 * results arriving at random moments (re-clusterings asked for earlier, auto's groups from a
 * preview, an opened plan, spectra, busy / idle), on models of 3 to 128 experts, drawn after every
 * step with the real drawing code at changing sizes (80x24, 60x16, 200x60, too small, random).
 * After every step the groups must be consistent with what the views walk (tui_fake.h).
 *
 *   test_tui_fuzz [SECONDS [SEED]]     (or TUI_FUZZ_SECONDS, TUI_FUZZ_SEED; default 3 s, seed 1)
 *
 * The seed is printed; a failure prints the seed, the step and the last keys, and the same seed
 * repeats the same run (time only decides when it stops). */
#include "testutil.h"
#include "tui_fake.h"

#include <time.h>

static tui_state s;
static uint64_t rng;

static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17; /* xorshift64 */
    return rng;
}

static int below(int n)
{
    return n > 0 ? (int)(next() % (uint64_t)n) : 0;
}

/* Keys: the help's, the editing keys, and everything else now and then. */
static int random_key(void)
{
    static const int keys[] = {'q', '?', 27, '\t', '1', '2', '3', 'K', 'J', 'k', 'j', 'h', 'l', 'H', 'L', 's', 'x',
                               '<', '>', ',', '.', 'f', '=', 'm', 'n', 'g', '+', '-', 'c', 'M', 'a', 'R', 'r', 'u', 'U',
                               18, 'p', 'P', 'w', 'o', 'C', 'y', 'Y', '\n', '\r', 21, 127, 8, TUI_KEY_UP,
                               TUI_KEY_DOWN, TUI_KEY_LEFT, TUI_KEY_RIGHT, TUI_KEY_BACKSPACE, TUI_KEY_RESIZE,
                               TUI_KEY_PGUP, TUI_KEY_PGDN, TUI_KEY_HOME, TUI_KEY_END};
    static const int edits[] = {'m', 'n', 'g', '+', '-', 'u', 'U', 'c', 'j', 'l', TUI_KEY_END, '2', '3'};
    int r = below(100);
    if (r < 45)
        return edits[below((int)(sizeof edits / sizeof edits[0]))];
    if (r < 90)
        return keys[below((int)(sizeof keys / sizeof keys[0]))];
    if (r < 97)
        return below(256);
    return 0x1000 + below(20); /* special keys and codes beyond them */
}

/* Re-clusterings asked for and not yet delivered: the plan as the job read it. */
#define PENDING 16
static struct {
    int layer;
    tui_layer asked;
} pending[PENDING];
static int n_pending;

static void random_groups(const tui_layer *p, int k, int *assign, bool hostile)
{
    for (int i = 0; i < p->n; i++)
        assign[i] = below(k > 0 ? k : 1);
    if (hostile && below(4) == 0)
        assign[below(p->n)] = below(3) == 0 ? -1 : TUI_MAX_EXPERTS + below(1000);
}

/* One worker result, as tui_jobs.c publishes it under the lock. */
static void worker_event(void)
{
    int assign[TUI_MAX_EXPERTS];
    int l = s.layer;
    const tui_layer *p = &s.res[l];
    switch (below(7)) {
    case 0: /* a re-clustering asked for earlier arrives (k-means may leave groups empty) */
        if (n_pending) {
            int i = below(n_pending);
            random_groups(&pending[i].asked, pending[i].asked.k, assign, true);
            tui_adopt_groups(&s, pending[i].layer, &pending[i].asked, assign);
            pending[i] = pending[--n_pending];
        }
        break;
    case 1: /* a preview of an auto layer adopts its dominant groups */
        if (s.is_moe[l] && p->is_auto && p->groups_auto) {
            tui_layer asked = *p;
            random_groups(p, p->k, assign, true);
            tui_adopt_groups(&s, l, &asked, assign);
            tui_layer_data *d = &s.data[l];
            d->have_preview = true;
            d->preview_gen = s.plan_gen[l];
            d->built_method = (sm_merge_method)below(SM_MERGE_METHOD_COUNT);
            for (int e = 0; e < p->n; e++)
                d->built_slot[e] = below(3) ? below(p->n) : -1;
            snprintf(d->chosen, sizeof d->chosen, "%s",
                     below(2) ? "submoe (held-out loss, nats/token: submoe 1.2, prune-frequency 1.3)" : "");
            d->output_error = below(1000) / 1000.0;
        }
        break;
    case 2: /* a plan opened: groups given, or only a count (tui_app_load_plan) */
        if (below(8) == 0) {
            for (int m = 0; m < s.n_layers; m++)
                if (s.is_moe[m]) {
                    int n = s.res[m].n;
                    random_groups(&s.res[m], 1 + below(n), assign, false);
                    fake_entry(&s, m, n, below(n + 2), below(2) ? assign : NULL);
                    s.plan_gen[m]++;
                }
            s.ci = s.cj = s.spec_cluster = 0;
            tui_clear_history(&s);
            s.modified = false;
        }
        break;
    case 3: /* a spectrum arrives, for the group asked or an older one */
        if (s.is_moe[l]) {
            tui_layer_data *d = &s.data[l];
            d->have_spectrum = true;
            d->spec_cluster = below(3) ? s.spec_cluster : below(p->k + 1);
            for (int e = 0; e < p->n; e++)
                d->spec_member[e] = p->assign[e] == d->spec_cluster;
            for (int q = 0; q < 3; q++) {
                int len = below(70);
                free(d->spec[q]);
                d->spec[q] = len ? malloc(sizeof(double) * (size_t)len) : NULL;
                d->spec_len[q] = len;
                for (int i = 0; i < len; i++)
                    d->spec[q][i] = below(4) ? 100.0 / (1 + i) : 0;
            }
        }
        break;
    case 4:
        s.busy = !s.busy;
        s.progress = below(101) / 100.0;
        s.queued = below(5);
        break;
    case 5: /* the perplexity */
        s.ppl_original = 5 + below(100) / 10.0;
        s.ppl_plan = 5 + below(100) / 10.0;
        s.ppl_gen = tui_plan_gen_sum(&s);
        break;
    default: /* a job failed: an error in the status line, or the commit asks to replace */
        if (below(2))
            snprintf(s.status, sizeof s.status, "error: %s", "x");
        else if (s.dialog == TUI_DIALOG_NONE && below(4) == 0)
            s.dialog = TUI_DIALOG_OVERWRITE;
        s.status_error = true;
        break;
    }
    tui_selection_settle(&s); /* as the loop does before drawing */
}

static const int sizes[][2] = {{80, 24}, {60, 16}, {200, 60}, {120, 40}, {59, 15}, {61, 17}};

int main(int argc, char **argv)
{
    const char *e1 = getenv("TUI_FUZZ_SECONDS"), *e2 = getenv("TUI_FUZZ_SEED");
    double seconds = argc > 1 ? atof(argv[1]) : e1 ? atof(e1) : 3;
    unsigned long long seed = argc > 2 ? strtoull(argv[2], NULL, 0) : e2 ? strtoull(e2, NULL, 0) : 1;
    rng = seed ? seed : 1;
    printf("# seed %llu, %.0f s (repeat: test_tui_fuzz %.0f %llu)\n", seed, seconds, seconds, seed);
    bool drawing = fake_term_open();
    if (!drawing)
        printf("# no terminfo for a curses screen: the drawing is not exercised\n");
    static const int shapes[][3] = {{4, 8, 2}, {3, 64, 8}, {2, 3, 2}, {2, 128, 2}, {5, 16, 4}};
    int last[24], n_last = 0, cols = 80, rows = 24;
    long steps = 0, keys = 0, events = 0, rounds = 0;
    bool ok = true;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (double el = 0; ok && (el < seconds || rounds < 1); rounds++) {
        const int *shape = shapes[rounds % (sizeof shapes / sizeof shapes[0])];
        fake_state(&s, shape[0], shape[1]);
        s.top_k = shape[2] < shape[1] ? shape[2] : shape[1];
        s.color = below(2);
        s.utf8 = below(2);
        n_pending = 0;
        for (int step = 0; ok && step < 3000; step++, steps++) {
            if (below(50) == 0) { /* resize */
                int z = below((int)(sizeof sizes / sizeof sizes[0]) + 1);
                cols = z < (int)(sizeof sizes / sizeof sizes[0]) ? sizes[z][0] : 20 + below(240);
                rows = z < (int)(sizeof sizes / sizeof sizes[0]) ? sizes[z][1] : 5 + below(80);
            }
            if (below(5) == 0) {
                worker_event();
                events++;
                last[n_last++ % 24] = -1;
            } else {
                int k = random_key();
                int act = tui_key(&s, k);
                keys++;
                last[n_last++ % 24] = k;
                if ((act & TUI_ACT_RECLUSTER) && n_pending < PENDING) {
                    pending[n_pending].layer = s.layer;
                    pending[n_pending++].asked = s.res[s.layer];
                }
                if (act & TUI_ACT_QUIT)
                    s.modified = false, s.dialog = TUI_DIALOG_NONE;
            }
            char ctx[64];
            snprintf(ctx, sizeof ctx, "seed %llu step %ld", seed, steps);
            ok = fake_consistent(&s, ctx) && strlen(s.input) < sizeof s.input && strlen(s.status) < sizeof s.status;
            if (drawing)
                fake_draw(&s, cols, rows);
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
    }
    if (!ok) {
        printf("# last keys (oldest first, -1 a worker result):");
        for (int i = n_last > 24 ? n_last - 24 : 0; i < n_last; i++)
            printf(" %d", last[i % 24]);
        printf("\n");
    }
    if (drawing)
        endwin();
    tui_state_free_data(&s);
    CHECK(ok, "%ld keys and %ld worker results in %ld rounds (seed %llu): groups consistent, drawn", keys, events,
          rounds, seed);
    return tu_done();
}
