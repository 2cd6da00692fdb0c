/* eval_task: `submoe eval MODEL --task FILE...` (see eval_task.h). */
#include "cmd/eval_task.h"
#include "eval/mcscore.h"
#include "eval/mctask.h"
#include "text/tok.h"
#include "util/diag.h"
#include "util/fileio.h"
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

/* json null for an undefined standard error (one item) */
static json_t *jnum(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static json_t *summary_json(const char *file, size_t items, double acc, double acc_se, double norm, double norm_se)
{
    json_t *j = json_object();
    if (file)
        json_object_set_new(j, "file", json_string(file));
    json_object_set_new(j, "items", json_integer((json_int_t)items));
    json_object_set_new(j, "acc", json_real(acc));
    json_object_set_new(j, "acc_stderr", jnum(acc_se));
    json_object_set_new(j, "acc_norm", json_real(norm));
    json_object_set_new(j, "acc_norm_stderr", jnum(norm_se));
    return j;
}

static void print_row(const char *name, size_t items, double acc, double acc_se, double norm, double norm_se)
{
    char se1[32] = "n/a", se2[32] = "n/a";
    if (!isnan(acc_se))
        snprintf(se1, sizeof se1, "%.4f", acc_se);
    if (!isnan(norm_se))
        snprintf(se2, sizeof se2, "%.4f", norm_se);
    printf("%-32s %7zu  %.4f  %7s  %.4f    %7s\n", name, items, acc, se1, norm, se2);
}

/* The mean over tasks (each task counts once) and its standard error sqrt(sum se^2) / k. */
static void task_mean(const task_run *r, int k, double m[4])
{
    double v[4] = {0, 0, 0, 0};
    memset(m, 0, 4 * sizeof *m);
    for (int i = 0; i < k; i++) {
        m[0] += r[i].s.acc / k;
        m[2] += r[i].s.acc_norm / k;
        v[1] += r[i].s.acc_stderr * r[i].s.acc_stderr;
        v[3] += r[i].s.acc_norm_stderr * r[i].s.acc_norm_stderr;
    }
    m[1] = sqrt(v[1]) / k;
    m[3] = sqrt(v[3]) / k;
}

static void print_results(const sm_eval_task_args *a, const task_run *r, double seconds)
{
    double m[4];
    task_mean(r, a->n_files, m);
    size_t all = 0;
    for (int i = 0; i < a->n_files; i++)
        all += r[i].s.n;
    if (a->json) {
        json_t *j = json_object(), *tasks = json_array();
        json_object_set_new(j, "model", json_string(a->model));
        for (int i = 0; i < a->n_files; i++)
            json_array_append_new(tasks, summary_json(a->files[i], r[i].s.n, r[i].s.acc, r[i].s.acc_stderr,
                                                      r[i].s.acc_norm, r[i].s.acc_norm_stderr));
        json_object_set_new(j, "tasks", tasks);
        json_object_set_new(j, "mean", summary_json(NULL, all, m[0], m[1], m[2], m[3]));
        json_object_set_new(j, "seconds", json_real(seconds));
        char *txt = json_dumps(j, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        printf("%s\n", txt ? txt : "{}");
        free(txt);
        json_decref(j);
    } else if (a->quiet) {
        for (int i = 0; i < a->n_files; i++)
            printf("%.6f %.6f\n", r[i].s.acc, r[i].s.acc_norm);
    } else {
        printf("%-32s %7s  %-6s  %7s  %-8s  %7s\n", "task", "items", "acc", "stderr", "acc_norm", "stderr");
        for (int i = 0; i < a->n_files; i++)
            print_row(a->files[i], r[i].s.n, r[i].s.acc, r[i].s.acc_stderr, r[i].s.acc_norm,
                      r[i].s.acc_norm_stderr);
        if (a->n_files > 1) {
            char name[64];
            snprintf(name, sizeof name, "mean of %d tasks", a->n_files);
            print_row(name, all, m[0], m[1], m[2], m[3]);
        }
        printf("time %.2f s\n", seconds);
    }
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

int sm_eval_tasks(const sm_eval_task_args *a)
{
    task_run *r = xcalloc((size_t)a->n_files, sizeof *r);
    sm_model *m = NULL;
    sm_tok *tok = NULL;
    int rc = 0;
    /* Every task file is read and checked before the model is touched. */
    for (int i = 0; i < a->n_files && !rc; i++)
        rc = sm_mc_task_read(a->files[i], &r[i].task);
    if (!rc && !(m = sm_model_open(a->model)))
        rc = -1;
    if (!rc && !(tok = sm_tok_load(a->model)))
        rc = sm_err_prefix("--task needs the model's tokenizer");
    double t0 = sm_now();
    sm_mc_opts o = {.delimiter = a->delimiter, .add_special = a->add_special, .quiet = a->quiet || a->json,
                    .mon = sm_signals_monitor()};
    for (int i = 0; i < a->n_files && !rc; i++)
        rc = sm_mc_score(m, tok, &r[i].task, &o, &r[i].s);
    if (!rc && sm_interrupted()) /* finished just as a signal arrived: no result either */
        rc = sm_err("cancelled");
    if (!rc && a->items_out)
        rc = write_items(a->items_out, r, a->n_files);
    if (rc)
        fprintf(stderr, "submoe eval: %s\n", sm_signals_errmsg());
    else
        print_results(a, r, sm_now() - t0);
    for (int i = 0; i < a->n_files; i++) {
        sm_mc_task_free(&r[i].task);
        sm_mc_scores_free(&r[i].s);
    }
    free(r);
    sm_tok_free(tok);
    sm_model_close(m);
    return rc ? 1 : 0;
}
