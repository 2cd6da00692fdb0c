/* text_args: --text and --text-field (see text_args.h). */
#include "cmd/text_args.h"
#include "util/diag.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

void cmd_text_args_init(cmd_text_args *t, int argc)
{
    memset(t, 0, sizeof *t);
    t->files = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof *t->files);
}

void cmd_text_args_free(cmd_text_args *t)
{
    free(t->files);
    memset(t, 0, sizeof *t);
}

int cmd_text_args_finish(cmd_text_args *t, int argc, char **argv, int optind)
{
    if (optind >= argc)
        return sm_err("expected one MODEL directory");
    if (t->field && !t->given)
        return sm_err("--text-field needs --text");
    if (t->field && !*t->field)
        return sm_err("--text-field: the field name is empty");
    if (!t->given && optind != argc - 1)
        return sm_err("expected one MODEL directory");
    for (int i = optind + 1; i < argc; i++)
        t->files[t->n++] = argv[i];
    t->src.files = t->files;
    t->src.n_files = t->n;
    t->src.field = t->field;
    return 0;
}
