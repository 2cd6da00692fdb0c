/* eval_task: `submoe eval MODEL --task FILE...` (see eval_task.h). */
#include "cmd/eval_task.h"
#include "eval/mcscore.h"
#include "eval/mctask.h"
#include "text/tok.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/iopaths.h"
#include "util/publish.h"
#include "util/jsonout.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/signals.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sm_mc_task task;
    sm_mc_scores s;
} task_run;

/* A standard error is undefined for one item: JSON null, the one null submoe writes. Every
 * other value goes through sm_json_number, so a non-finite one is an error (util/jsonout.h). */
static json_t *jnum(double v, int is_stderr)
{
    return is_stderr && isnan(v) ? json_null() : sm_json_number(v);
}

/* acc, acc_norm, acc_bytes, each followed by its standard error. */
enum { N_SUMMARY = 6 };
static const char *const summary_names[N_SUMMARY] = {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr",
                                                     "acc_bytes", "acc_bytes_stderr"};

static void summary_of(const sm_mc_scores *s, double v[N_SUMMARY])
{
    const double x[N_SUMMARY] = {s->acc, s->acc_stderr, s->acc_norm, s->acc_norm_stderr, s->acc_bytes,
                                 s->acc_bytes_stderr};
    memcpy(v, x, sizeof x);
}

static json_t *summary_json(const char *file, size_t items, const double v[N_SUMMARY])
{
    json_t *j = json_object();
    int bad = file ? sm_json_set(j, "file", json_string(file)) : 0;
    bad |= sm_json_set(j, "items", json_integer((json_int_t)items));
    for (int k = 0; k < N_SUMMARY; k++)
        bad |= sm_json_set(j, summary_names[k], jnum(v[k], k % 2));
    if (bad)
        json_decref(j);
    return bad ? NULL : j;
}

static void print_row(const char *name, size_t items, const double v[N_SUMMARY])
{
    printf("%-32s %7zu", name, items);
    for (int k = 0; k < N_SUMMARY; k++) {
        if (isnan(v[k]))
            printf("  %9s", "n/a");
        else
            printf("  %9.4f", v[k]);
    }
    printf("\n");
}

/* The mean over tasks (each task counts once); its standard error sqrt(sum se^2) / k. */
static void task_mean(const task_run *r, int k, double m[N_SUMMARY])
{
    memset(m, 0, N_SUMMARY * sizeof *m);
    for (int i = 0; i < k; i++) {
        double v[N_SUMMARY];
        summary_of(&r[i].s, v);
        for (int q = 0; q < N_SUMMARY; q += 2) {
            m[q] += v[q] / k;
            m[q + 1] += v[q + 1] * v[q + 1];
        }
    }
    for (int q = 1; q < N_SUMMARY; q += 2)
        m[q] = sqrt(m[q]) / k;
}

static int print_json(const sm_eval_task_args *a, const task_run *r, size_t all, const double m[N_SUMMARY],
                      double seconds)
{
    json_t *j = json_object(), *tasks = json_array();
    int bad = sm_json_set(j, "model", json_string(a->model));
    for (int i = 0; i < a->n_files; i++) {
        double v[N_SUMMARY];
        summary_of(&r[i].s, v);
        bad |= sm_json_append(tasks, summary_json(a->files[i], r[i].s.n, v), "tasks");
    }
    bad |= sm_json_set(j, "tasks", tasks);
    bad |= sm_json_set(j, "mean", summary_json(NULL, all, m));
    uint64_t tokens = 0; /* read by the model, padding included (long items: truncated) */
    for (int i = 0; i < a->n_files; i++)
        tokens += r[i].s.tokens;
    bad |= sm_json_set(j, "tokens", json_integer((json_int_t)tokens));
    bad |= sm_json_set(j, "seconds", sm_json_number(seconds));
    int rc = bad ? -1 : sm_json_print(stdout, j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10), "the task result");
    json_decref(j);
    return rc;
}

static int print_results(const sm_eval_task_args *a, const task_run *r, double seconds)
{
    double m[N_SUMMARY], v[N_SUMMARY];
    task_mean(r, a->n_files, m);
    size_t all = 0;
    for (int i = 0; i < a->n_files; i++)
        all += r[i].s.n;
    if (a->json)
        return print_json(a, r, all, m, seconds);
    if (a->quiet) {
        for (int i = 0; i < a->n_files; i++)
            printf("%.6f %.6f\n", r[i].s.acc, r[i].s.acc_norm);
    } else {
        printf("%-32s %7s", "task", "items");
        for (int k = 0; k < N_SUMMARY; k++)
            printf("  %9s", k % 2 ? "stderr" : summary_names[k]);
        printf("\n");
        for (int i = 0; i < a->n_files; i++) {
            summary_of(&r[i].s, v);
            print_row(a->files[i], r[i].s.n, v);
        }
        if (a->n_files > 1) {
            char name[64];
            snprintf(name, sizeof name, "mean of %d tasks", a->n_files);
            print_row(name, all, m);
        }
        printf("time %.2f s\n", seconds);
    }
    return 0;
}

/* One line per choice: file, line, choice, gold?, continuation tokens, log-likelihood. */
static int write_items(const char *path, const task_run *r, int k)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return sm_err("out of memory");
    fprintf(f, "file\tline\tchoice\tgold\ttokens\tloglik\n");
    for (int i = 0; i < k; i++)
        for (size_t it = 0; it < r[i].s.n; it++) {
            const sm_mc_item *item = &r[i].task.items[it];
            for (int c = 0; c < item->n_choices; c++) {
                size_t slot = r[i].s.first[it] + (size_t)c;
                fprintf(f, "%s\t%d\t%d\t%d\t%d\t%.9f\n", r[i].task.path, item->line, c, c == item->gold,
                        r[i].s.n_tokens[slot], r[i].s.ll[slot]);
            }
        }
    fclose(f);
    int rc = sm_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

/* --items never lands on the model's files or a task file (util/iopaths.h). */
static int check_items_output(const sm_eval_task_args *a)
{
    sm_paths inputs = {0}, outputs = {0};
    sm_paths_add_model(&inputs, a->model);
    for (int i = 0; i < a->n_files; i++)
        sm_paths_add(&inputs, "task file", a->files[i]);
    sm_paths_add(&outputs, "items file", a->items_out);
    int rc = sm_check_output_paths(&inputs, &outputs);
    sm_paths_free(&inputs);
    sm_paths_free(&outputs);
    return rc;
}

int sm_eval_tasks(const sm_eval_task_args *a)
{
    task_run *r = xcalloc((size_t)a->n_files, sizeof *r);
    sm_model *m = NULL;
    sm_tok *tok = NULL;
    int rc = a->items_out ? check_items_output(a) : 0;
    /* Every task file is read and checked before the model is touched. */
    for (int i = 0; i < a->n_files && !rc; i++)
        rc = sm_mc_task_read(a->files[i], &r[i].task);
    if (!rc && !(m = sm_model_open(a->model)))
        rc = -1;
    if (!rc && !(tok = sm_tok_load(a->model)))
        rc = sm_err_prefix("--task needs the model's tokenizer");
    double t0 = sm_now();
    sm_mc_opts o = {.delimiter = a->delimiter, .add_special = a->add_special, .quiet = a->quiet || a->json,
                    .max_length = a->max_length,
                    .mon = sm_signals_monitor(), .precision = a->precision};
    for (int i = 0; i < a->n_files && !rc; i++)
        rc = sm_mc_score(m, tok, &r[i].task, &o, &r[i].s);
    if (!rc && sm_interrupted()) /* finished just as a signal arrived: no result either */
        rc = sm_err("cancelled");
    if (!rc && a->items_out)
        rc = write_items(a->items_out, r, a->n_files);
    if (!rc)
        rc = print_results(a, r, sm_now() - t0);
    if (rc)
        fprintf(stderr, "submoe eval: %s\n", sm_signals_errmsg());
    for (int i = 0; i < a->n_files; i++) {
        sm_mc_task_free(&r[i].task);
        sm_mc_scores_free(&r[i].s);
    }
    free(r);
    sm_tok_free(tok);
    sm_model_close(m);
    return rc ? 1 : 0;
}
