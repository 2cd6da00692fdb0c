#include "fixture.h"

#include "cmd/cmd.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

char *fx_tmpdir(const char *name)
{
    const char *base = getenv("TMPDIR");
    char *dir = xasprintf("%s/%s.XXXXXX", base && base[0] ? base : "/tmp", name);
    if (!mkdtemp(dir)) {
        printf("# fixture: cannot make %s\n", dir);
        free(dir);
        return NULL;
    }
    return dir;
}

void fx_tmpdir_remove(char *dir)
{
    if (dir && sm_remove_tree(dir))
        printf("# fixture: %s\n", sm_errmsg());
    free(dir);
}

char *fx_srcpath(const char *rel)
{
    const char *src = getenv("SRCDIR");
    return xasprintf("%s/%s", src ? src : ".", rel);
}

sm_model *fx_demo_open(void)
{
    const char *demo = getenv("DEMO");
    if (!demo) {
        printf("# fixture: DEMO must be set (the demo model's directory)\n");
        return sm_err("DEMO is not set"), NULL;
    }
    return sm_model_open(demo);
}

int fx_synth(const sm_synth_opts *o, const char *dir)
{
    return sm_mkdirs(dir) || sm_synth_write(o, dir) ? -1 : 0;
}

void fx_small_synth_opts(sm_synth_opts *o, sm_arch arch, int experts, uint64_t seed)
{
    sm_synth_defaults(o, arch);
    o->layers = 2, o->hidden = 64, o->intermediate = 32, o->experts = experts, o->clusters = 4, o->vocab = 256;
    o->heads = 4, o->kv_heads = 2, o->quiet = true, o->dtype = SM_DT_F32, o->seed = seed;
    o->first_dense = 1;
}

/* visit(name, m, c) when c is there; else a "# fixture:" line and 1. */
static int visit_calibrated(const char *name, const sm_model *m, sm_calib *c, fx_calibrated_visit visit)
{
    if (!c) {
        printf("# fixture: %s: %s\n", name, sm_errmsg());
        return 1;
    }
    visit(name, m, c);
    return 0;
}

static int visit_synth(const char *name, sm_arch arch, const sm_calib_spec *s, fx_calibrated_visit visit)
{
    sm_synth_opts o;
    fx_small_synth_opts(&o, arch, arch == SM_ARCH_MIXTRAL ? 8 : 16, 11);
    o.top_k = arch == SM_ARCH_MIXTRAL ? 2 : arch == SM_ARCH_DEEPSEEK ? 3 : 4;
    char *dir = fx_tmpdir(name);
    sm_model *m = NULL;
    sm_calib *c = NULL;
    if (!dir)
        sm_err("no scratch directory");
    else if (fx_synth(&o, dir) == 0 && (m = sm_model_open(dir)))
        c = sm_calib_capture(m, s, NULL, NULL, NULL);
    int missing = visit_calibrated(sm_arch_name(arch), m, c, visit);
    sm_calib_free(c);
    sm_model_close(m);
    fx_tmpdir_remove(dir);
    return missing;
}

int fx_each_calibrated(const char *name, int heldout, fx_calibrated_visit visit)
{
    char *tokens = fx_srcpath("data/calib.u32");
    sm_calib_spec s;
    fx_calib_spec(&s, tokens, 4, 128);
    s.keep = 500, s.heldout = heldout, s.sample = 64;
    sm_model *m = fx_demo_open();
    sm_calib *c = m ? sm_calib_capture(m, &s, NULL, NULL, NULL) : NULL;
    int missing = visit_calibrated("demo", m, c, visit);
    sm_calib_free(c);
    sm_model_close(m);
    static const sm_arch archs[] = {SM_ARCH_MIXTRAL, SM_ARCH_QWEN2_MOE, SM_ARCH_QWEN3_MOE, SM_ARCH_OLMOE,
                                    SM_ARCH_DEEPSEEK};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        missing += visit_synth(name, archs[i], &s, visit);
    free(tokens);
    return missing;
}

int fx_synth_reference(json_t *fixture, const char *dir)
{
    json_t *args = json_object_get(fixture, "synth");
    int argc = 3 + (int)json_array_size(args);
    char **argv = xcalloc((size_t)argc + 1, sizeof *argv);
    argv[0] = "synth";
    argv[1] = "--out";
    argv[2] = (char *)dir;
    for (size_t i = 0; i < json_array_size(args); i++)
        argv[3 + i] = (char *)json_string_value(json_array_get(args, i));
    optind = 0;
    int rc = cmd_synth(argc, argv);
    free(argv);
    if (rc)
        return 1;
    json_t *patch = json_object_get(fixture, "config");
    if (!json_object_size(patch))
        return 0;
    char *path = sm_path_join(dir, "config.json");
    json_t *cfg = json_load_file(path, 0, NULL);
    rc = !cfg || json_object_update(cfg, patch) || json_dump_file(cfg, path, JSON_INDENT(2)) ? 2 : 0;
    json_decref(cfg);
    free(path);
    return rc;
}

int fx_test_plan(const char *name, sm_plan *p)
{
    char *rel = sm_path_join("tests/plans", name), *path = fx_srcpath(rel);
    int rc = sm_plan_read(path, p);
    free(rel), free(path);
    return rc;
}

json_t *fx_reference(const char *fmt, ...)
{
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    char *rel = xasprintf("tests/fixtures/%s.json", name), *path = fx_srcpath(rel);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        printf("# fixture: %s: %s\n", path, je.text);
    free(rel), free(path);
    return j;
}

void fx_calib_spec(sm_calib_spec *s, const char *tokens, int samples, int seq_len)
{
    sm_calib_spec_default(s);
    s->tokens = tokens;
    s->samples = samples;
    s->seq_len = seq_len;
    s->quiet = true;
}
