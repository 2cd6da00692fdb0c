#include "config.h"
#include "util/matmul.h"

#include <cblas.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"
#include "util/vectorize.h"

/* ---- bf16 ---- */

/* Branch-free, so that it vectorizes (a large share of a bf16 forward pass's own time is rounding
 * activations). */
SM_VECTORIZED void sm_bf16_pack(uint16_t *restrict dst, const float *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        uint32_t rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
        dst[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rne); /* NaN stays a (quiet) NaN */
    }
}

void sm_bf16_unpack(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}

/* ---- oneDNN, loaded on first use ----
 * dlopen rather than linking: libdnnl is 40 MB of code, which alone exceeds the address-space
 * limits that util/limits.c reports with a message (it would fail before main), and a machine
 * without it still runs everything on OpenBLAS. */

#define DNNL_FUNCS(X)                                                                            \
    X(get_effective_cpu_isa) X(engine_create) X(stream_create) X(stream_destroy)                 \
    X(memory_desc_init_by_strides) X(memory_desc_init_by_tag) X(matmul_desc_init)                \
    X(primitive_attr_create) X(primitive_attr_set_scratchpad_mode) X(post_ops_create)            \
    X(post_ops_append_sum) X(primitive_attr_set_post_ops) X(primitive_desc_create)               \
    X(primitive_desc_query) X(primitive_desc_query_md) X(memory_desc_get_size) X(primitive_create) \
    X(primitive_desc_destroy) X(post_ops_destroy) X(primitive_attr_destroy) X(memory_create)     \
    X(primitive_execute) X(stream_wait) X(memory_destroy) X(set_max_cpu_isa)

static struct {
#define FIELD(f) __typeof__(&dnnl_##f) f;
    DNNL_FUNCS(FIELD)
#undef FIELD
} dl;
static char dl_error[256];

/* 0 when every function was found; else -1 with dl_error set. */
static int dl_load(void)
{
    void *h = dlopen(SM_DNNL_SONAME, RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(dl_error, sizeof dl_error, "%s", e ? e : SM_DNNL_SONAME ": cannot be loaded");
        return -1;
    }
#define LOAD(f)                                                                      \
    if (!(*(void **)&dl.f = dlsym(h, "dnnl_" #f))) {                                 \
        snprintf(dl_error, sizeof dl_error, SM_DNNL_SONAME " has no dnnl_" #f);      \
        return -1;                                                                   \
    }
    DNNL_FUNCS(LOAD)
#undef LOAD
    return 0;
}

/* ---- precision ---- */

static bool loaded(void);

/* oneDNN's ISA limit from the environment (its own variables): then only oneDNN can say. */
static bool isa_limited(void)
{
    return getenv("ONEDNN_MAX_CPU_ISA") || getenv("DNNL_MAX_CPU_ISA");
}

/* The CPU's own answer (no oneDNN: loading its 40 MB takes seconds on a loaded machine, which
 * a command that never needs it should not pay): AVX-512 state enabled by the OS, and
 * AVX512-BF16 (*amx: AMX-BF16 too). */
static bool cpu_bf16(bool *amx)
{
    unsigned a, b, c, d;
    *amx = false;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return false;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6u) != 0xe6u) /* SSE, AVX, opmask and both ZMM halves enabled */
        return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 16))) /* AVX512F */
        return false;
    *amx = (d & (1u << 22)) && (d & (1u << 24)); /* AMX-BF16, AMX-TILE */
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)); /* AVX512-BF16 */
}

bool sm_matmul_bf16_supported(void)
{
    if (isa_limited()) {
        if (!loaded())
            return false;
        /* The ISA values nest: AMX includes the AVX512-BF16 bits. */
        unsigned isa = (unsigned)dl.get_effective_cpu_isa();
        return (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    }
    bool amx;
    return cpu_bf16(&amx);
}

bool sm_matmul_bf16_pays(void)
{
    if (!sm_matmul_bf16_supported())
        return false;
    bool amx;
    if (isa_limited() ? (unsigned)dl.get_effective_cpu_isa() == (unsigned)dnnl_cpu_isa_avx512_core_amx
                      : (cpu_bf16(&amx), amx))
        return true;
    /* Intel's AVX512-BF16 without AMX issues one 32-product vdpbf16ps per cycle, the rate of its
     * two fp32 FMAs: oneDNN 2.6 measured 84 against 155 GFLOP/s per core here (bench/README).
     * AMD's Zen 4 runs it at twice its fp32 rate. */
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return false;
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* "AuthenticAMD" */
}

int sm_precision_parse(const char *s, sm_precision *out)
{
    if (!strcmp(s, "fp32")) {
        *out = SM_PRECISION_FP32;
        return 0;
    }
    if (!strcmp(s, "auto")) {
        *out = sm_matmul_bf16_pays() ? SM_PRECISION_BF16 : SM_PRECISION_FP32;
        return 0;
    }
    if (!strcmp(s, "bf16")) {
        if (!loaded())
            return sm_err("--precision bf16: oneDNN could not be loaded (%s; Debian package libdnnl2); "
                          "use --precision fp32 or auto", dl_error);
        if (!sm_matmul_bf16_supported())
            return sm_err("--precision bf16: this CPU has no bf16 dot products (AVX512-BF16 or AMX); "
                          "use --precision fp32 or auto");
        *out = SM_PRECISION_BF16;
        return 0;
    }
    return sm_err("--precision '%s': expected auto, fp32 or bf16", s);
}

const char *sm_precision_name(sm_precision p)
{
    return p == SM_PRECISION_BF16 ? "bf16" : "fp32";
}

bool sm_matmul_on_pool_threads(void)
{
#ifdef __SANITIZE_ADDRESS__
    return false;
#else
    return true;
#endif
}

int sm_matmul_set_threads(int n)
{
    int prev = omp_get_max_threads();
    if (n >= 1 && n != prev)
        omp_set_num_threads(n);
    return prev;
}

/* ---- per-thread state: a stream and scratch buffers, freed when the thread ends ---- */

typedef struct {
    dnnl_stream_t stream;
    void *xb;           /* a block of x rounded to bf16, or padded */
    size_t xb_cap;
    float *yp;          /* a padded block of y */
    size_t yp_cap;
    void *scratch;      /* the primitive's scratchpad (user-managed: primitives run concurrently) */
    size_t scratch_cap;
} thread_state;

static dnnl_engine_t engine;
static bool engine_ok;
static pthread_key_t state_key;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void state_free(void *p)
{
    thread_state *t = p;
    if (t->stream)
        dl.stream_destroy(t->stream);
    free(t->xb);
    free(t->yp);
    free(t->scratch);
    free(t);
}

static void init(void)
{
    engine_ok = dl_load() == 0;
#ifdef __SANITIZE_ADDRESS__
    /* LeakSanitizer (GCC 12) crashes at exit scanning the calling thread's dynamic TLS once
     * oneDNN's AMX kernels have run on it (test_finite's eval that fails at layer 1, on an AMX
     * Xeon): sanitizer builds stop at AVX512-BF16 kernels, which bf16 products still exercise. */
    if (engine_ok && !isa_limited())
        dl.set_max_cpu_isa(dnnl_cpu_isa_avx512_core_bf16);
#endif
    engine_ok = engine_ok && dl.engine_create(&engine, dnnl_cpu, 0) == dnnl_success &&
                pthread_key_create(&state_key, state_free) == 0;
}

static bool loaded(void)
{
    pthread_once(&init_once, init);
    return engine_ok;
}

static thread_state *state(void)
{
    pthread_once(&init_once, init);
    if (!engine_ok)
        return NULL;
    thread_state *t = pthread_getspecific(state_key);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (dl.stream_create(&t->stream, engine, dnnl_stream_default_flags) != dnnl_success ||
        pthread_setspecific(state_key, t) != 0) {
        state_free(t);
        return NULL;
    }
    return t;
}

/* Buffers on 64-byte lines: oneDNN's AMX kernels run a third slower on operands (and a
 * scratchpad) that straddle cache lines (bench/README). */
static void *grow(void **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap)
        return *buf;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0)
        return NULL;
    free(*buf);
    *buf = p;
    *cap = bytes;
    return p;
}

/* ---- the primitive cache ---- */

/* oneDNN 2.6 picks its fast brgemm kernels only for a fixed M (a runtime M gets the slower
 * gemm:jit), so rows run in blocks of ROW_BLOCK with one primitive per (n, k), and a last partial
 * block is padded to a multiple of ROW_PAD: at most ROW_BLOCK / ROW_PAD + 1 primitives per shape,
 * each created once (well under a millisecond). */
#define ROW_BLOCK 1024
#define ROW_PAD 16
_Static_assert(ROW_BLOCK % ROW_PAD == 0, "a full row block needs no padding");

/* The rows a product of m rows runs on: m rounded up to whole ROW_PADs. */
static int64_t padded_rows(int64_t m)
{
    return m <= 0 ? 0 : (m + ROW_PAD - 1) / ROW_PAD * ROW_PAD;
}

/* A product's layout: op(A) m×k and op(B) k×n row-major with leading dimensions, transposed or
 * not (sm_matmul is ta 0, tb 1, lda ldb k, ldc n). */
typedef struct {
    bool ta, tb;
    int64_t lda, ldb, ldc;
} layout;

typedef struct {
    int64_t m, n, k;
    bool bf16, acc;
    int threads;
    layout lay;
    bool used;
    dnnl_primitive_t prim; /* NULL: oneDNN refused the shape (use OpenBLAS) */
    size_t scratch;
    char impl[48];
} prim_entry;

#define PRIM_SLOTS 4096 /* open addressing; full: OpenBLAS */
static prim_entry prims[PRIM_SLOTS];
static pthread_mutex_t prims_lock = PTHREAD_MUTEX_INITIALIZER;

static void md2(dnnl_memory_desc_t *md, int64_t r, int64_t c, int64_t sr, int64_t sc, dnnl_data_type_t dt)
{
    dnnl_dims_t dims = {r, c}, strides = {sr, sc};
    dl.memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

static layout matmul_layout(int64_t n, int64_t k)
{
    return (layout){.ta = false, .tb = true, .lda = k, .ldb = k, .ldc = n};
}

static bool same_layout(const layout *a, const layout *b)
{
    return a->ta == b->ta && a->tb == b->tb && a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc;
}

/* Source m×k, weights k×n (for sm_matmul viewed over the n×k row-major W: strides 1, k),
 * destination m×n, each with its layout's strides. */
static void make_descs(int64_t m, int64_t n, int64_t k, bool bf16, const layout *l, dnnl_memory_desc_t *src,
                       dnnl_memory_desc_t *wei, dnnl_memory_desc_t *dst)
{
    dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
    md2(src, m, k, l->ta ? 1 : l->lda, l->ta ? l->lda : 1, in);
    md2(wei, k, n, l->tb ? 1 : l->ldb, l->tb ? l->ldb : 1, in);
    md2(dst, m, n, l->ldc, 1, dnnl_f32);
}

static void prim_create(prim_entry *e)
{
    dnnl_memory_desc_t src, wei, dst;
    make_descs(e->m, e->n, e->k, e->bf16, &e->lay, &src, &wei, &dst);
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    snprintf(e->impl, sizeof e->impl, "openblas");
    if (dl.matmul_desc_init(&desc, &src, &wei, NULL, &dst) != dnnl_success ||
        dl.primitive_attr_create(&attr) != dnnl_success ||
        dl.primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success)
        goto out;
    if (e->acc && (dl.post_ops_create(&po) != dnnl_success || dl.post_ops_append_sum(po, 1.0f) != dnnl_success ||
                   dl.primitive_attr_set_post_ops(attr, po) != dnnl_success))
        goto out;
    if (dl.primitive_desc_create(&pd, &desc, attr, engine, NULL) != dnnl_success)
        goto out;
    const char *impl = NULL;
    dl.primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    /* oneDNN's reference kernels are far slower than OpenBLAS: only its optimised ones are used */
    if (!impl || !strncmp(impl, "ref", 3))
        goto out;
    const dnnl_memory_desc_t *sp = dl.primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch = sp ? dl.memory_desc_get_size(sp) : 0;
    if (dl.primitive_create(&e->prim, pd) != dnnl_success)
        e->prim = NULL;
    else
        snprintf(e->impl, sizeof e->impl, "%s", impl);
out:
    if (pd)
        dl.primitive_desc_destroy(pd);
    if (po)
        dl.post_ops_destroy(po);
    if (attr)
        dl.primitive_attr_destroy(attr);
}

static prim_entry *prim_get(int64_t m, int64_t n, int64_t k, bool bf16, bool acc, const layout *lay)
{
    int threads = omp_get_max_threads();
    uint64_t h = (uint64_t)m * 0x9e3779b97f4a7c15ull ^ (uint64_t)n * 0xc2b2ae3d27d4eb4full ^
                 (uint64_t)k * 0x165667b19e3779f9ull ^ (uint64_t)(bf16 | acc << 1 | threads << 2) * 0x27d4eb2f165667c5ull ^
                 (uint64_t)(lay->ta | lay->tb << 1) * 0x94d049bb133111ebull ^
                 ((uint64_t)lay->lda * 31u + (uint64_t)lay->ldb * 17u + (uint64_t)lay->ldc) * 0xbf58476d1ce4e5b9ull;
    prim_entry *e = NULL;
    pthread_mutex_lock(&prims_lock);
    for (int probe = 0; probe < PRIM_SLOTS && !e; probe++) {
        prim_entry *s = &prims[(h + (uint64_t)probe) % PRIM_SLOTS];
        if (!s->used) {
            /* created under the lock: once per shape, and no two threads build the same one */
            *s = (prim_entry){.m = m, .n = n, .k = k, .bf16 = bf16, .acc = acc, .threads = threads, .lay = *lay,
                              .used = true};
            prim_create(s);
            e = s;
        } else if (s->m == m && s->n == n && s->k == k && s->bf16 == bf16 && s->acc == acc && s->threads == threads &&
                   same_layout(&s->lay, lay))
            e = s;
    }
    pthread_mutex_unlock(&prims_lock);
    return e;
}

/* ---- products ---- */

void sm_matmul_blas(int64_t m, int64_t n, int64_t k, const float *x, const float *w,
                    const uint16_t *wb, float beta, float *y)
{
    if (m <= 0 || n <= 0)
        return;
    if (!wb) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w,
                    (int)k, beta, y, (int)n);
        return;
    }
    enum { PANEL = 256 };
    float *p = xmalloc(sizeof *p * (size_t)PANEL * (size_t)k);
    for (int64_t r0 = 0; r0 < n; r0 += PANEL) {
        int64_t rows = n - r0 < PANEL ? n - r0 : PANEL;
        sm_bf16_unpack(p, wb + r0 * k, (size_t)(rows * k));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)rows, (int)k, 1.0f, x, (int)k, p,
                    (int)k, beta, y + r0, (int)n);
    }
    free(p);
}

static int execute(const prim_entry *e, thread_state *t, const void *xs, const void *wp, float *y)
{
    dnnl_memory_desc_t src, wei, dst;
    make_descs(e->m, e->n, e->k, e->bf16, &e->lay, &src, &wei, &dst);
    dnnl_memory_t ms = NULL, mw = NULL, md = NULL, mp = NULL;
    int rc = -1;
    void *sp = e->scratch ? grow(&t->scratch, &t->scratch_cap, e->scratch) : NULL;
    if (e->scratch && !sp)
        return -1;
    if (dl.memory_create(&ms, &src, engine, (void *)xs) != dnnl_success ||
        dl.memory_create(&mw, &wei, engine, (void *)wp) != dnnl_success ||
        dl.memory_create(&md, &dst, engine, y) != dnnl_success)
        goto out;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, md}};
    int nargs = 3;
    if (sp) {
        dnnl_memory_desc_t spd;
        dnnl_dims_t d = {(int64_t)e->scratch};
        dl.memory_desc_init_by_tag(&spd, 1, d, dnnl_u8, dnnl_a);
        if (dl.memory_create(&mp, &spd, engine, sp) != dnnl_success)
            goto out;
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, mp};
    }
    if (dl.primitive_execute(e->prim, t->stream, nargs, args) == dnnl_success &&
        dl.stream_wait(t->stream) == dnnl_success)
        rc = 0;
out:;
    dnnl_memory_t all[4] = {ms, mw, md, mp};
    for (int i = 0; i < 4; i++)
        if (all[i])
            dl.memory_destroy(all[i]);
    return rc;
}

/* Rows [0, rows) of x into the block's source (bf16 or fp32) padded with zero rows to mp; 0 or
 * -1 (no memory). *src is x itself when nothing needs converting or padding. */
static int block_source(thread_state *t, const float *x, int64_t rows, int64_t mp, int64_t k, bool bf16,
                        const void **src)
{
    if (!bf16 && rows == mp) {
        *src = x;
        return 0;
    }
    size_t esz = bf16 ? sizeof(uint16_t) : sizeof(float);
    char *buf = grow((void **)&t->xb, &t->xb_cap, esz * (size_t)(mp * k));
    if (!buf)
        return -1;
    if (bf16)
        sm_bf16_pack((uint16_t *)buf, x, (size_t)(rows * k));
    else
        memcpy(buf, x, sizeof(float) * (size_t)(rows * k));
    memset(buf + esz * (size_t)(rows * k), 0, esz * (size_t)((mp - rows) * k));
    *src = buf;
    return 0;
}

/* The calling thread's oneDNN state for a product, or NULL when it runs on OpenBLAS (use_dnnl
 * false, or oneDNN absent). LeakSanitizer (GCC 12) crashes at exit scanning the dynamic TLS that
 * oneDNN (dlopen'ed) leaves in OpenMP's pooled worker threads: sanitizer builds run it on the
 * calling thread. */
static thread_state *product_state(bool use_dnnl)
{
    thread_state *t = use_dnnl ? state() : NULL;
#ifdef __SANITIZE_ADDRESS__
    if (t && omp_get_max_threads() > 1)
        omp_set_num_threads(1);
#endif
    return t;
}

/* One block of rows through oneDNN: 0, or -1 (then y is untouched, or fully written by a
 * failed kernel only in cases oneDNN does not have on CPU). The source is x (fp32, rounded to
 * bf16 here when bf16), or xb: bf16 rows already rounded, readable up to the padded row count. */
static int block(thread_state *t, int64_t rows, int64_t n, int64_t k, const float *x, const uint16_t *xb,
                 const void *wp, bool bf16, bool acc, float *y, bool y_padded)
{
    int64_t mp = padded_rows(rows);
    layout lay = matmul_layout(n, k);
    prim_entry *e = prim_get(mp, n, k, bf16, acc, &lay);
    const void *src = xb;
    if (!e || !e->prim || (!xb && block_source(t, x, rows, mp, k, bf16, &src)))
        return -1;
    if (mp == rows || y_padded) /* (y_padded: y has room for the pad rows, scratch to the caller) */
        return execute(e, t, src, wp, y);
    float *yp = grow((void **)&t->yp, &t->yp_cap, sizeof *yp * (size_t)(mp * n));
    if (!yp)
        return -1;
    if (acc)
        memcpy(yp, y, sizeof *yp * (size_t)(rows * n));
    if (execute(e, t, src, wp, yp))
        return -1;
    memcpy(y, yp, sizeof *yp * (size_t)(rows * n));
    return 0;
}

/* fp32 products this small stay on OpenBLAS: oneDNN's per-call cost (about 10 µs) would
 * dominate, and small models keep their exact fp32 results. */
static bool small_fp32(int64_t m, int64_t n, int64_t k)
{
    return m < 32 || n * k < (int64_t)1 << 20;
}

void sm_matmul(int64_t m, int64_t n, int64_t k, const float *x, const float *w, const uint16_t *wb,
               float beta, float *y)
{
    if (m <= 0 || n <= 0)
        return;
    bool bf16 = wb != NULL, acc = beta != 0.0f;
    thread_state *t = product_state(bf16 || !small_fp32(m, n, k));
    const void *wp = bf16 ? (const void *)wb : (const void *)w;
    for (int64_t r0 = 0; r0 < m; r0 += ROW_BLOCK) {
        int64_t rows = m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK;
        if (!t || block(t, rows, n, k, x + r0 * k, NULL, wp, bf16, acc, y + r0 * n, false))
            sm_matmul_blas(rows, n, k, x + r0 * k, w, wb, beta, y + r0 * n);
    }
}

int64_t sm_matmul_bf16_rows(int64_t m)
{
    return padded_rows(m);
}

static void matmul_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *xb, const uint16_t *wb, float beta, float *y,
                        bool y_padded)
{
    if (m <= 0 || n <= 0)
        return;
    bool acc = beta != 0.0f;
    thread_state *t = product_state(true);
    float *xf = NULL;
    for (int64_t r0 = 0; r0 < m; r0 += ROW_BLOCK) {
        int64_t rows = m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK;
        if (t && !block(t, rows, n, k, NULL, xb + r0 * k, wb, true, acc, y + r0 * n, y_padded))
            continue;
        /* no oneDNN: OpenBLAS on the rounded rows' exact fp32 values */
        if (!xf)
            xf = xmalloc(sizeof *xf * (size_t)(ROW_BLOCK * k));
        sm_bf16_unpack(xf, xb + r0 * k, (size_t)(rows * k));
        sm_matmul_blas(rows, n, k, xf, NULL, wb, beta, y + r0 * n);
    }
    free(xf);
}

void sm_matmul_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *xb, const uint16_t *wb, float beta, float *y)
{
    matmul_bf16(m, n, k, xb, wb, beta, y, false);
}

void sm_matmul_bf16_pad(int64_t m, int64_t n, int64_t k, const uint16_t *xb, const uint16_t *wb, float *y)
{
    matmul_bf16(m, n, k, xb, wb, 0.0f, y, true);
}

const char *sm_matmul_impl(int64_t n, int64_t k, bool bf16)
{
    if (!state())
        return "openblas";
    layout lay = matmul_layout(n, k);
    prim_entry *e = prim_get(ROW_BLOCK, n, k, bf16, false, &lay);
    return e ? e->impl : "openblas";
}

/* ---- general fp32 products (the union SVD's Grams and projections) ---- */

/* Below this many multiply-adds a product stays on OpenBLAS: oneDNN's per-call cost would show,
 * and the demo's merges keep their exact OpenBLAS results (their largest product, a gate Gram of
 * 256·256·128, is 2^23). */
#define GEMM_DNNL_MIN_MACS ((int64_t)1 << 24)

static void gemm_blas(const layout *l, int64_t m, int64_t n, int64_t k, const float *a, const float *b, float beta,
                      float *c)
{
    cblas_sgemm(CblasRowMajor, l->ta ? CblasTrans : CblasNoTrans, l->tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, 1.0f, a, (int)l->lda, b, (int)l->ldb, beta, c, (int)l->ldc);
}

bool sm_gemm_dnnl(int64_t m, int64_t n, int64_t k)
{
    return m > 0 && n > 0 && k > 0 && m * n * k >= GEMM_DNNL_MIN_MACS && loaded();
}

void sm_gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    const layout lay = {.ta = trans_a, .tb = trans_b, .lda = lda, .ldb = ldb, .ldc = ldc};
    bool acc = beta != 0.0f;
    thread_state *t = product_state(sm_gemm_dnnl(m, n, k));
    for (int64_t r0 = 0; r0 < m; r0 += ROW_BLOCK) {
        int64_t rows = m - r0 < ROW_BLOCK ? m - r0 : ROW_BLOCK;
        const float *ab = trans_a ? a + r0 : a + r0 * lda;
        prim_entry *e = t ? prim_get(rows, n, k, false, acc, &lay) : NULL;
        if (!e || !e->prim || execute(e, t, ab, b, c + r0 * ldc))
            gemm_blas(&lay, rows, n, k, ab, b, beta, c + r0 * ldc);
    }
}

const char *sm_gemm_impl(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                         int64_t ldc)
{
    const layout lay = {.ta = trans_a, .tb = trans_b, .lda = lda, .ldb = ldb, .ldc = ldc};
    if (!sm_gemm_dnnl(m, n, k) || !state())
        return "openblas";
    prim_entry *e = prim_get(m < ROW_BLOCK ? m : ROW_BLOCK, n, k, false, false, &lay);
    return e ? e->impl : "openblas";
}

/* ---- general bf16 products (attention's per-head scores and weighted values) ---- */

/* The fallback: the bf16 operands widened (exactly) and multiplied by OpenBLAS sgemm. */
static void gemm_bf16_blas(const layout *l, int64_t m, int64_t n, int64_t k, const uint16_t *a, const uint16_t *b,
                           float *c)
{
    int64_t brows = l->tb ? n : k, bcols = l->tb ? k : n;
    float *af = xmalloc(sizeof *af * (size_t)(m * k)), *bf = xmalloc(sizeof *bf * (size_t)(brows * bcols));
    for (int64_t i = 0; i < m; i++)
        sm_bf16_unpack(af + i * k, a + i * l->lda, (size_t)k);
    for (int64_t i = 0; i < brows; i++)
        sm_bf16_unpack(bf + i * bcols, b + i * l->ldb, (size_t)bcols);
    const layout packed = {.tb = l->tb, .lda = k, .ldb = bcols, .ldc = l->ldc};
    gemm_blas(&packed, m, n, k, af, bf, 0.0f, c);
    free(af);
    free(bf);
}

void sm_gemm_bf16(bool trans_b, int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *b,
                  int64_t ldb, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    const layout lay = {.tb = trans_b, .lda = lda, .ldb = ldb, .ldc = ldc};
    thread_state *t = product_state(true);
    prim_entry *e = t ? prim_get(m, n, k, true, false, &lay) : NULL;
    if (!e || !e->prim || execute(e, t, a, b, c))
        gemm_bf16_blas(&lay, m, n, k, a, b, c);
}
