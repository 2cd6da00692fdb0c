/* A tiny synthetic model made once per fuzzing process (in /dev/shm, removed at exit). */
#ifndef SM_FUZZ_MODEL_H
#define SM_FUZZ_MODEL_H

#include "model/synth.h"
#include "util/fileio.h"

#include <stdlib.h>
#include <sys/stat.h>

static char fuzz_model_dir[128];

static void fuzz_model_cleanup(void)
{
    sm_remove_tree(fuzz_model_dir);
}

/* The directory of the model (config.json + model.safetensors), or NULL. */
static inline const char *fuzz_model(void)
{
    if (fuzz_model_dir[0])
        return fuzz_model_dir;
    snprintf(fuzz_model_dir, sizeof fuzz_model_dir, "/dev/shm/submoe-fuzz-%ld", (long)getpid());
    mkdir(fuzz_model_dir, 0755);
    sm_synth_opts o;
    sm_synth_defaults(&o, SM_ARCH_MIXTRAL);
    o.layers = 2, o.hidden = 16, o.intermediate = 32, o.experts = 4, o.clusters = 2;
    o.heads = 2, o.kv_heads = 1, o.vocab = 32, o.quiet = true;
    if (sm_synth_write(&o, fuzz_model_dir) != 0)
        return NULL;
    atexit(fuzz_model_cleanup);
    return fuzz_model_dir;
}

#endif
