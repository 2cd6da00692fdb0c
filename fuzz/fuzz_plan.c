/* Fuzz the YAML plan reader (sm_plan_parse) and the writer on what it accepts. */
#include "fuzz.h"
#include "plan/plan.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sm_plan p;
    if (sm_plan_parse((const char *)data, size, "fuzz.yaml", &p) == 0) {
        char *text;
        size_t len;
        if (sm_plan_format(&p, &text, &len) == 0) {
            sm_plan q; /* what the writer writes must read back */
            if (sm_plan_parse(text, len, "roundtrip.yaml", &q) != 0)
                abort();
            sm_plan_free(&q);
            free(text);
        }
    }
    sm_plan_free(&p);
    return 0;
}
