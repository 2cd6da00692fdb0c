#include "util/datadir.h"

#include <stdio.h>
#include <stdlib.h>

#include "util/diag.h"
#include "util/fileio.h"

const char *sm_data_dir(void)
{
    const char *env = getenv("SUBMOE_DATA");
    if (env && *env)
        return env;
    /* Running from the build tree: prefer the source tree's data/. */
    if (sm_is_dir(SUBMOE_SRCDATA "/demo"))
        return SUBMOE_SRCDATA;
    return SUBMOE_PKGDATA;
}

const char *sm_demo_dir(void)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/demo", sm_data_dir());
    return buf;
}

int sm_bundled_tokens_check(int vocab, const char *file, const char *option)
{
    if (vocab == 256)
        return 0;
    return sm_err("%s is the bundled byte tokens (English text as ids 0..255), but the model's vocabulary has %d "
                  "tokens: give its own token ids with %s FILE (submoe tokenize MODEL TEXT -o FILE makes them) or "
                  "text with --text FILE",
                  file, vocab, option);
}
