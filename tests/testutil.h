/* testutil: minimal checks for the unit tests (exit status drives automake's harness).
 * Each CHECK prints one line; the program exits 1 if any failed. */
#ifndef SM_TESTUTIL_H
#define SM_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failures, tu_checks;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        tu_checks++;                                                              \
        if (cond) {                                                               \
            printf("ok %d - ", tu_checks);                                        \
        } else {                                                                  \
            tu_failures++;                                                        \
            printf("not ok %d - %s:%d: (%s) ", tu_checks, __FILE__, __LINE__, #cond); \
        }                                                                         \
        printf(__VA_ARGS__);                                                      \
        printf("\n");                                                             \
    } while (0)

/* |a-b| <= tol * max(1, |b|) */
#define CHECK_NEAR(a, b, tol, what)                                               \
    do {                                                                          \
        double tu_a = (a), tu_b = (b);                                            \
        double tu_s = fabs(tu_b) > 1.0 ? fabs(tu_b) : 1.0;                        \
        CHECK(fabs(tu_a - tu_b) <= (tol) * tu_s, "%s: %.9g vs %.9g", what, tu_a, tu_b); \
    } while (0)

#define CHECK_STR(a, b, what)                                                     \
    do {                                                                          \
        const char *tu_x = (a), *tu_y = (b);                                      \
        CHECK(tu_x && tu_y && strcmp(tu_x, tu_y) == 0, "%s: '%s' vs '%s'", what,  \
              tu_x ? tu_x : "(null)", tu_y ? tu_y : "(null)");                    \
    } while (0)

static inline int tu_done(void)
{
    printf("%d checks, %d failed\n", tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

#endif
