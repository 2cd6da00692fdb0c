/* fixture: the set-ups the C tests share — a scratch directory, files of the source tree (test
 * plans, reference fixtures), the demo model, synthetic models (from options or from a reference
 * fixture's synth command line), quiet calibration specs, and the calibrated models the
 * cached-error tests walk. Nothing here checks anything: each helper returns NULL or non-zero on
 * failure (with sm_errmsg() or a "# fixture:" line saying why), and the test's CHECK decides. */
#ifndef SM_TEST_FIXTURE_H
#define SM_TEST_FIXTURE_H

#include <jansson.h>

#include "model/model.h"
#include "model/synth.h"
#include "pipeline/calib.h"
#include "plan/plan.h"
#include "util/diag.h"

/* A new empty directory "$TMPDIR/NAME.XXXXXX" (/tmp without TMPDIR), or NULL. Remove it, with
 * everything in it, and free the name with fx_tmpdir_remove. */
char *fx_tmpdir(const char *name);
void fx_tmpdir_remove(char *dir);

/* "$SRCDIR/REL" ("./REL" without SRCDIR). Caller frees. */
char *fx_srcpath(const char *rel);

/* The demo model ($DEMO) opened; NULL without DEMO (a "# fixture:" line) or when it does not open
 * (sm_errmsg). */
sm_model *fx_demo_open(void);

/* Write the synthetic model o describes into dir (created, with its parents, if missing). 0, or
 * -1 with sm_errmsg. */
int fx_synth(const sm_synth_opts *o, const char *dir);

/* The small synth the engine tests build on: 2 layers (layer 0 dense, layer 1 MoE), hidden 64,
 * intermediate 32, `experts` experts in 4 planted clusters, vocab 256, 4 heads (2 kv), float32,
 * quiet, `seed`; the rest (top-k, shared experts) arch's defaults. */
void fx_small_synth_opts(sm_synth_opts *o, sm_arch arch, int experts, uint64_t seed);

/* The models the cached-error tests (test_subset, test_heldout) compare on: the demo, then a
 * small synth (fx_small_synth_opts, seed 11) of each of the five architectures, with 8 experts
 * top-2 (mixtral) or 16 experts top-4 (deepseek: top-3), written under "$TMPDIR/NAME.*". Each is
 * calibrated on data/calib.u32 (4 windows of 128 tokens, 500 rows kept, `heldout` held out, 64
 * sampled) and visit(name, model, calib) runs on it; then it is freed and removed. A model that
 * could not be written, opened or calibrated is a "# fixture:" line saying why, and counted:
 * returns how many there were. */
typedef void (*fx_calibrated_visit)(const char *name, const sm_model *m, sm_calib *c);
int fx_each_calibrated(const char *name, int heldout, fx_calibrated_visit visit);

/* Regenerate a reference fixture's model (tools/ref_forward.py) into dir: `submoe synth --out
 * dir` with the fixture's "synth" arguments, then the config.json keys of its "config" object
 * (what synth's command line cannot express, e.g. mlp_only_layers). 0; 1 if synth failed; 2 if
 * the config could not be patched. */
int fx_synth_reference(json_t *fixture, const char *dir);

/* sm_plan_read of the test plan tests/plans/NAME of the source tree: 0, or -1 with sm_errmsg. */
int fx_test_plan(const char *name, sm_plan *p);

/* The reference fixture tests/fixtures/NAME.json of the source tree (NAME as printf formats
 * fmt) loaded; NULL with a "# fixture:" line saying why. */
json_t *fx_reference(const char *fmt, ...) SM_PRINTF(1, 2);

/* The default calibration spec, quiet, on `tokens`: samples sequences of seq_len tokens. */
void fx_calib_spec(sm_calib_spec *s, const char *tokens, int samples, int seq_len);

#endif
