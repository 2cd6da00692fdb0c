/* test_mctask: `submoe eval --task` scoring against the PyTorch reference (tools/ref_forward.py
 * --task-fixtures): for every architecture, regenerate the synth model from the fixture's command
 * line, write its tokenizer.json and task file, and compare each choice's log-likelihood (to
 * 1e-4), continuation token count, acc and acc_norm. Also the task-file reader's messages and
 * the whitespace/length helpers lm-eval's semantics rely on. */
#include "cmd/cmd.h"
#include "eval/mcscore.h"
#include "eval/mctask.h"
#include "model/model.h"
#include "text/tok.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "fixture.h"
#include "testutil.h"

#include <getopt.h>
#include <jansson.h>
#include <unistd.h>

/* Synth the fixture's model into dir (as test_forward does). */
static int synth_model(json_t *fx, const char *dir)
{
    int rc = fx_synth_reference(fx, dir);
    char *tp = sm_path_join(dir, "tokenizer.json");
    if (!rc)
        rc = json_dump_file(json_object_get(fx, "tokenizer"), tp, 0);
    free(tp);
    return rc;
}

static void run_fixture(const char *arch)
{
    json_t *fx = fx_reference("task-%s", arch);
    CHECK(fx != NULL, "%s: the reference fixture loads", arch);
    if (!fx)
        return;
    char *tmp = fx_tmpdir("test_mctask");
    char *dir = sm_path_join(tmp ? tmp : "/nonexistent", "model");
    CHECK(synth_model(fx, dir) == 0, "%s: synth model and tokenizer.json", arch);
    sm_model *m = sm_model_open(dir);
    sm_tok *tok = sm_tok_load(dir);
    const char *text = json_string_value(json_object_get(fx, "task"));
    sm_mc_task t;
    int prc = sm_mc_task_parse("fixture.jsonl", text, strlen(text), &t);
    CHECK(m && tok && prc == 0, "%s: model, tokenizer and task load %s", arch, m && tok && !prc ? "" : sm_errmsg());
    if (m && tok && !prc) {
        sm_mc_opts o = {.delimiter = json_string_value(json_object_get(fx, "delimiter")), .add_special = true,
                         .quiet = true};
        sm_mc_scores s;
        int rc = sm_mc_score(m, tok, &t, &o, &s);
        CHECK(rc == 0, "%s: scores %s", arch, rc ? sm_errmsg() : "");
        if (!rc) {
            json_t *ll = json_object_get(fx, "loglik"), *nt = json_object_get(fx, "tokens");
            double worst = 0;
            int bad_tokens = 0;
            for (size_t i = 0; i < t.n; i++)
                for (int c = 0; c < t.items[i].n_choices; c++) {
                    size_t slot = s.first[i] + (size_t)c;
                    double want = json_real_value(json_array_get(json_array_get(ll, i), (size_t)c));
                    double d = fabs(s.ll[slot] - want);
                    worst = d > worst ? d : worst;
                    bad_tokens += s.n_tokens[slot] !=
                                  json_integer_value(json_array_get(json_array_get(nt, i), (size_t)c));
                }
            CHECK(worst <= 1e-4, "%s: max |log-likelihood diff| %.3g <= 1e-4", arch, worst);
            CHECK(bad_tokens == 0, "%s: continuation token counts match the reference's encoding", arch);
            CHECK(s.acc == json_real_value(json_object_get(fx, "acc")), "%s: acc %.4f", arch, s.acc);
            CHECK(s.acc_norm == json_real_value(json_object_get(fx, "acc_norm")), "%s: acc_norm %.4f", arch,
                  s.acc_norm);
            CHECK(s.acc_bytes == json_real_value(json_object_get(fx, "acc_bytes")), "%s: acc_bytes %.4f", arch,
                  s.acc_bytes);
            sm_mc_scores_free(&s);
        }
    }
    if (!prc)
        sm_mc_task_free(&t);
    sm_tok_free(tok);
    sm_model_close(m);
    fx_tmpdir_remove(tmp);
    free(dir);
    json_decref(fx);
}

static void test_helpers(void)
{
    const char *s = "ab \t\xc2\xa0\x1c"; /* space, tab, U+00A0 and U+001C are all str.isspace */
    CHECK(sm_mc_rstrip_len(s, strlen(s)) == 2, "rstrip drops Python's whitespace");
    CHECK(sm_mc_rstrip_len("a\xe2\x80\x8b", 4) == 4, "U+200B is not whitespace for Python");
    CHECK(sm_mc_rstrip_len("   ", 3) == 0, "all whitespace");
    CHECK(sm_mc_char_len("h\xc3\xa9llo \xe2\x82\xac") == 7, "length in characters, not bytes");
}

/* acc_norm divides by characters, acc_bytes by UTF-8 bytes (lm-eval): with a 2-character choice
 * of 6 bytes ("\u20ac\u20ac") against a 4-character ASCII one they pick differently. */
static void test_metrics(void)
{
    const char *text = "{\"context\": \"a\", \"choices\": [\"\u20ac\u20ac\", \"abcd\"], \"gold\": 0}\n"
                       "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 1}\n"
                       "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n";
    sm_mc_task t;
    int rc = sm_mc_task_parse("m.jsonl", text, strlen(text), &t);
    CHECK(rc == 0, "metrics task parses %s", rc ? sm_errmsg() : "");
    if (rc)
        return;
    size_t first[4] = {0, 2, 4, 6};
    /* item 1: -3/2 chars = -1.5 > -4/4 = -1? no: -1.5 < -1 -> acc_norm picks "abcd" (1);
     *         -3/6 bytes = -0.5 > -1 -> acc_bytes picks the euros (0); raw ll: -3 > -4 -> 0.
     * items 2, 3: a tie goes to the first choice. */
    double ll[6] = {-3, -4, -2, -2, -2, -2};
    int pred[3], pred_norm[3], pred_bytes[3];
    sm_mc_scores s = {.n = 3, .first = first, .ll = ll, .pred = pred, .pred_norm = pred_norm,
                      .pred_bytes = pred_bytes};
    sm_mc_metrics(&t, &s);
    CHECK(pred[0] == 0 && pred_norm[0] == 1 && pred_bytes[0] == 0, "characters vs bytes: %d %d %d", pred[0],
          pred_norm[0], pred_bytes[0]);
    CHECK(pred[1] == 0 && pred[2] == 0, "ties go to the first choice");
    CHECK(fabs(s.acc - 2.0 / 3) < 1e-12 && fabs(s.acc_norm - 1.0 / 3) < 1e-12 && fabs(s.acc_bytes - 2.0 / 3) < 1e-12,
          "acc %.4f acc_norm %.4f acc_bytes %.4f", s.acc, s.acc_norm, s.acc_bytes);
    /* sample standard deviation of (1, 0, 1) / sqrt(3) */
    CHECK(fabs(s.acc_stderr - sqrt(1.0 / 3) / sqrt(3.0)) < 1e-12, "acc_stderr %.6f (mean_stderr)", s.acc_stderr);
    sm_mc_task_free(&t);
}

static void expect_error(const char *text, const char *want)
{
    sm_mc_task t;
    int rc = sm_mc_task_parse("t.jsonl", text, strlen(text), &t);
    CHECK(rc != 0 && strstr(sm_errmsg(), want), "refused with '%s': %s", want, rc ? sm_errmsg() : "accepted");
    if (!rc)
        sm_mc_task_free(&t);
}

static void test_reader(void)
{
    const char *ok = "\n{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"gold\": 1, \"id\": 7}\n  \n"
                     "{\"gold\": 0, \"choices\": [\"x\"], \"context\": \"\"}";
    sm_mc_task t;
    int rc = sm_mc_task_parse("t.jsonl", ok, strlen(ok), &t);
    CHECK(rc == 0 && t.n == 2 && t.items[0].line == 2 && t.items[1].line == 4 && t.items[0].gold == 1 &&
              t.items[0].n_choices == 2 && strcmp(t.items[0].choices[1], "c") == 0,
          "blank lines skipped, other keys ignored, lines counted %s", rc ? sm_errmsg() : "");
    if (!rc)
        sm_mc_task_free(&t);
    expect_error("", "t.jsonl: no items");
    expect_error("\n \n", "t.jsonl: no items");
    expect_error("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0}\n{oops", "t.jsonl:2: not valid JSON");
    expect_error("{\"context\": \"a\", \"choices\": [\"b\"]}", "t.jsonl:1: missing \"gold\"");
    expect_error("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 1}", "t.jsonl:1: \"gold\" 1 is out of range");
    expect_error("{\"context\": \"a\", \"choices\": [], \"gold\": 0}", "t.jsonl:1: \"choices\" is empty");
    expect_error("{\"context\": \"a\", \"choices\": [\"b\", 3], \"gold\": 0}", "t.jsonl:1: choices[1] is not a string");
    expect_error("[1, 2]", "t.jsonl:1: expected a JSON object");
    expect_error("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0, \"gold\": 0}", "t.jsonl:1: not valid JSON");
}

int main(void)
{
    test_helpers();
    test_reader();
    test_metrics();
    static const char *const archs[] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek"};
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        run_fixture(archs[i]);
    return tu_done();
}
