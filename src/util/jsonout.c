/* jsonout: complete-or-nothing JSON results (see jsonout.h). */
#include "util/jsonout.h"
#include "util/diag.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

json_t *sm_json_number(double v)
{
    return isfinite(v) ? json_real(v) : NULL;
}

int sm_json_set(json_t *obj, const char *key, json_t *v)
{
    if (!v)
        return sm_err("result field \"%s\" is not a finite number (or could not be encoded as JSON)", key);
    if (!obj || json_object_set_new(obj, key, v) != 0) /* set_new releases v on failure too */
        return sm_err("result field \"%s\" could not be stored as JSON", key);
    return 0;
}

int sm_json_append(json_t *arr, json_t *v, const char *what)
{
    if (!v)
        return sm_err("an entry of result field \"%s\" could not be encoded as JSON", what);
    if (!arr || json_array_append_new(arr, v) != 0)
        return sm_err("an entry of result field \"%s\" could not be stored as JSON", what);
    return 0;
}

int sm_json_print(FILE *out, const json_t *j, size_t flags, const char *what)
{
    char *text = j ? json_dumps(j, flags) : NULL;
    if (!text)
        return sm_err("%s could not be encoded as JSON (a value that is not a finite number?)", what);
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, out) == n && fputc('\n', out) != EOF ? 0
                                                                      : sm_err("%s: cannot write the JSON output", what);
    free(text);
    return rc;
}
