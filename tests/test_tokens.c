/* Token files: raw uint32 and .npy int32/int64, header validation, vocabulary check. */
#include "model/tokens.h"
#include "testutil.h"
#include "util/diag.h"

#include <stdint.h>

static size_t npy(unsigned char *buf, const char *descr, const char *shape, const void *data, size_t n)
{
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    int hl = len + pad + 1;
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    memcpy(buf + 10, hdr, (size_t)len);
    memset(buf + 10 + len, ' ', (size_t)pad);
    buf[10 + len + pad] = '\n';
    memcpy(buf + 10 + hl, data, n);
    return 10 + (size_t)hl + n;
}

int main(void)
{
    sm_tokens t;
    uint32_t raw[4] = {1, 2, 255, 0};
    CHECK(sm_tokens_parse("a.u32", raw, sizeof raw, 256, &t) == 0 && t.n == 4 && t.ids[2] == 255, "raw uint32");
    sm_tokens_free(&t);
    CHECK(sm_tokens_parse("a.u32", raw, sizeof raw, 255, &t) == -1 && strstr(sm_errmsg(), "token 2") &&
              strstr(sm_errmsg(), "a.u32"),
          "id >= vocab refused with position: %s", sm_errmsg());
    CHECK(sm_tokens_parse("a.u32", raw, 7, 256, &t) == -1 && strstr(sm_errmsg(), "multiple of 4"), "odd size: %s",
          sm_errmsg());
    CHECK(sm_tokens_parse("e.u32", raw, 0, 256, &t) == -1, "empty file: %s", sm_errmsg());

    unsigned char buf[512];
    int32_t i32[6] = {5, 6, 7, 8, 9, 10};
    size_t n = npy(buf, "<i4", "(2, 3)", i32, sizeof i32);
    CHECK(sm_tokens_parse("b.npy", buf, n, 256, &t) == 0 && t.n == 6 && t.ids[5] == 10, "npy int32 2-D");
    sm_tokens_free(&t);
    int64_t i64[3] = {3, 4, 300};
    n = npy(buf, "<i8", "(3,)", i64, sizeof i64);
    CHECK(sm_tokens_parse("c.npy", buf, n, 0, &t) == 0 && t.n == 3 && t.ids[2] == 300, "npy int64");
    sm_tokens_free(&t);
    CHECK(sm_tokens_parse("c.npy", buf, n, 256, &t) == -1 && strstr(sm_errmsg(), "token 2"), "npy vocab: %s",
          sm_errmsg());
    int64_t neg[1] = {-1};
    n = npy(buf, "<i8", "(1,)", neg, sizeof neg);
    CHECK(sm_tokens_parse("d.npy", buf, n, 256, &t) == -1 && strstr(sm_errmsg(), "negative"), "npy negative: %s",
          sm_errmsg());
    n = npy(buf, "<f4", "(3,)", i32, 12);
    CHECK(sm_tokens_parse("f.npy", buf, n, 256, &t) == -1 && strstr(sm_errmsg(), "dtype"), "npy float refused: %s",
          sm_errmsg());
    n = npy(buf, "<i4", "(4,)", i32, 12);
    CHECK(sm_tokens_parse("g.npy", buf, n, 256, &t) == -1 && strstr(sm_errmsg(), "shape needs"),
          "npy short data: %s", sm_errmsg());
    n = npy(buf, "<i4", "(3,)", i32, 12);
    CHECK(sm_tokens_parse("h.npy", buf, 20, 256, &t) == -1, "npy truncated header: %s", sm_errmsg());
    buf[8] = 0xff;
    buf[9] = 0xff;
    CHECK(sm_tokens_parse("i.npy", buf, n, 256, &t) == -1 && strstr(sm_errmsg(), "past the end"),
          "npy header length past end: %s", sm_errmsg());
    CHECK(sm_tokens_read("/nonexistent/x.u32", 256, &t) == -1 && strstr(sm_errmsg(), "/nonexistent/x.u32"),
          "missing file named: %s", sm_errmsg());
    return tu_done();
}
