/* Oniguruma wrapper (see tok_regex.h). */
#include "text/tok_regex.h"
#include "text/tok_utf8.h"
#include "util/diag.h"
#include "util/mem.h"

#include <oniguruma.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct sm_tok_regex {
    regex_t *re;
    OnigRegion *region;
};

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static void onig_setup(void)
{
    OnigEncoding enc[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(enc, 1);
}

sm_tok_regex *sm_tok_regex_new(const char *pattern, size_t len, char *err, size_t errn)
{
    pthread_once(&onig_once, onig_setup);
    regex_t *re;
    OnigErrorInfo info;
    const UChar *p = (const UChar *)pattern;
    int r = onig_new(&re, p, p + len, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &info);
        snprintf(err, errn, "%s", (const char *)msg);
        return NULL;
    }
    sm_tok_regex *x = xcalloc(1, sizeof *x);
    x->re = re;
    x->region = onig_region_new();
    return x;
}

void sm_tok_regex_free(sm_tok_regex *re)
{
    if (!re)
        return;
    onig_region_free(re->region, 1);
    onig_free(re->re);
    free(re);
}

long sm_tok_regex_find_all(sm_tok_regex *re, const char *s, size_t n, sm_tok_span **spans, size_t *cap)
{
    const UChar *str = (const UChar *)s, *end = str + n;
    size_t pos = 0, count = 0;
    size_t last_match_end = (size_t)-1;
    while (pos <= n) {
        onig_region_clear(re->region);
        int r = onig_search(re->re, str, end, str + pos, end, re->region, ONIG_OPTION_NONE);
        if (r == ONIG_MISMATCH)
            break;
        if (r < 0) {
            UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
            onig_error_code_to_str(msg, r);
            return sm_err("regular expression search failed: %s", (const char *)msg);
        }
        size_t ms = (size_t)re->region->beg[0], me = (size_t)re->region->end[0];
        if (ms == me && last_match_end == me) {
            /* no empty match right after the previous one: step one character */
            size_t len = 1;
            if (pos < n)
                sm_tok_utf8_next(s + pos, n - pos, &len);
            pos += len;
            continue;
        }
        pos = me;
        last_match_end = me;
        if (count == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *spans = xrealloc(*spans, *cap * sizeof **spans);
        }
        (*spans)[count++] = (sm_tok_span){ms, me};
    }
    return (long)count;
}
