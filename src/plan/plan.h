/* plan: `submoe_plan: 1` YAML documents (DESIGN §4; man/submoe-plan.5) — read, validate, write.
 *
 * A plan fully determines a run: the source model (path, fingerprint), calibration, defaults,
 * per-layer overrides (expert count, explicit groups, per-matrix ranks, method, router, …),
 * per-cluster rank overrides and the output. Every setting records whether it was given, so
 * the caller applies the documented defaults; every layer and setting records its line and column
 * so model-dependent errors can still point into the file.
 *
 * Errors are one line: "FILE:LINE:COL: KEY.PATH: what is wrong". */
#ifndef SM_PLAN_H
#define SM_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "model/model.h"

#define SM_PLAN_VERSION 1
#define SM_PLAN_MAX_BYTES (16u << 20)
/* Deepest nesting of lists and mappings accepted (a real plan nests 4 deep). Checked while the
 * document is scanned: libyaml's scanner takes quadratic time in the depth, so a file of 100 000
 * '[' would otherwise run for minutes before any check. */
#define SM_PLAN_MAX_DEPTH 64

typedef enum { SM_OUT_HF = 0, SM_OUT_HF_EXPANDED, SM_OUT_SUBMOE, SM_OUT_FORMAT_COUNT } sm_out_format;
const char *sm_out_format_name(sm_out_format f); /* "hf", "hf-expanded", "submoe" */
int sm_out_format_parse(const char *s, sm_out_format *out);
/* defaults.svd: "auto", "exact" (SM_USVD_EIGEN) or "randomized". */
const char *sm_plan_svd_name(sm_usvd_solver s);
int sm_plan_svd_parse(const char *s, sm_usvd_solver *out);

/* The plan-wide settings of every merge (defaults only): whitening damping and how union bases
 * are computed. The workbench keeps them as they were read, to write them back. */
typedef struct sm_plan_merge {
    bool has_damping, has_svd;
    double damping;
    sm_usvd_solver svd; /* AUTO when not given */
} sm_plan_merge;
/* A matrix's merge options: `rank`, and the plan's damping and svd (0 / AUTO when not given). */
sm_merge_opts sm_plan_matrix_opts(const sm_plan_merge *m, sm_rank rank);

typedef struct sm_plan_pos {
    int line, col; /* 1-based; 0 when not from a file */
} sm_plan_pos;

/* Per-matrix ranks (gate, up, down), each optional. */
typedef struct sm_plan_ranks {
    sm_rank r[3];
    bool set[3];
    sm_plan_pos pos[3];
} sm_plan_ranks;

/* The settings a layer can override; `has_*` says whether the document gave them. */
typedef struct sm_plan_settings {
    bool has_method, method_auto;
    sm_merge_method method;
    bool has_similarity;
    sm_similarity_kind similarity;
    bool has_clustering;
    sm_cluster_algo clustering;
    bool has_router;
    sm_router_mode router;
    bool has_align, align;
    bool has_refit, refit;     /* refit: down (true) or none */
    sm_plan_pos pos_refit;
    bool has_experts;
    int experts;
    sm_plan_ranks rank;
    sm_plan_pos pos_experts;
} sm_plan_settings;

typedef struct sm_plan_cluster {
    int index;
    sm_plan_ranks rank;
    bool has_refit, refit;     /* the cluster's own refit: down / none */
    sm_plan_pos pos, pos_refit;
} sm_plan_cluster;

typedef struct sm_plan_layer {
    int layer;
    sm_plan_pos pos;
    sm_plan_settings s;
    int n_groups;          /* 0: no explicit groups */
    int *group_len;        /* n_groups */
    int **groups;          /* n_groups arrays of expert indices, as written */
    sm_plan_pos pos_groups;
    int n_clusters;
    sm_plan_cluster *clusters;
    char *chosen;          /* `auto` provenance: the method chosen, as written (may be NULL) */
    char *comment;         /* written as YAML comments above the layer (not read back) */
} sm_plan_layer;

typedef struct sm_plan {
    char *file;            /* path the plan was read from ("" when built in memory) */
    char *model_path;      /* as written */
    bool has_fingerprint;
    char fingerprint[32];
    sm_plan_pos pos_fingerprint, pos_model;
    struct {
        char *tokens, *stats;          /* as written, or NULL */
        char **text;                   /* text files instead of tokens (text/corpus.h), as written */
        int n_text;
        char *text_field;              /* JSON Lines field, or NULL ("text") */
        char *text_digest, *tokenizer_digest; /* recorded by plan: apply refuses changed text */
        bool has_samples, has_seq_len, has_keep, has_heldout, has_sample, has_seed;
        int samples, seq_len;
        int64_t keep, heldout, sample;
        uint64_t seed;
    } calib;
    sm_plan_settings defaults;
    bool has_ratio, has_allocation, adaptive, has_window, has_seed;
    double ratio;
    sm_plan_merge merge;   /* defaults.damping, defaults.svd */
    int window;
    uint64_t seed;
    int n_layers;
    sm_plan_layer *layers; /* in file order */
    struct {
        bool has_format, has_dtype, has_shard_size;
        sm_out_format format;
        int dtype;         /* -1: each tensor keeps its dtype ("source"), else an sm_dtype */
        uint64_t shard_size;
        char *path;        /* as written, or NULL */
    } output;
    char *header_comment;  /* written above the document (not read back) */
} sm_plan;

void sm_plan_init(sm_plan *p);
void sm_plan_free(sm_plan *p);

/* Parse a document; `filename` is used in messages. 0, or -1 with a message. */
int sm_plan_parse(const char *text, size_t len, const char *filename, sm_plan *out);
/* Read and parse a file (at most SM_PLAN_MAX_BYTES). */
int sm_plan_read(const char *path, sm_plan *out);

/* A path written in the plan, resolved against the plan file's directory (absolute paths and
 * plans built in memory are returned as is). Caller frees. */
char *sm_plan_resolve_path(const sm_plan *p, const char *written);

/* A deep copy of a layer entry (groups, cluster ranks, chosen, comment), e.g. for undo; free it
 * with sm_plan_layer_free, which frees what an entry owns and zeroes it. */
void sm_plan_layer_copy(sm_plan_layer *dst, const sm_plan_layer *src);
void sm_plan_layer_free(sm_plan_layer *l);

/* The plan's layer entry for layer L, or NULL. */
const sm_plan_layer *sm_plan_find_layer(const sm_plan *p, int layer);

/* The documented defaults (man/submoe-plan.5) for what neither a layer nor `defaults` says. */
#define SM_PLAN_DEFAULT_AUTO true
#define SM_PLAN_DEFAULT_METHOD SM_MERGE_SUBMOE /* also auto's merge candidate */
/* The router a plan that names none gets is the best its output format can hold
 * (sm_plan_default_router): remap, exact, where the format keeps every router row (submoe, the
 * default format, and hf-expanded); the best collapse for hf, which stores one row per expert. */
#define SM_PLAN_DEFAULT_ROUTER SM_ROUTER_REMAP
#define SM_PLAN_DEFAULT_COLLAPSE SM_ROUTER_COLLAPSE_KL
sm_router_mode sm_plan_default_router(const sm_plan *p);
#define SM_PLAN_DEFAULT_REFIT false

/* refit's values: "down" (true) or "none" (false). */
const char *sm_plan_refit_name(bool refit);
int sm_plan_refit_parse(const char *s, bool *out);

/* What a layer's settings come to: its own, else the plan's defaults, else the documented ones.
 * The resolver (pipeline/resolve.h) and the model checks read plans through it. */
typedef struct sm_plan_effective {
    bool is_auto;
    sm_merge_method method;        /* auto: SM_PLAN_DEFAULT_METHOD, its merge candidate */
    sm_router_mode router;
    bool align;
    bool refit;                    /* refit: down */
    sm_cluster_algo clustering;
    sm_similarity_kind similarity;
    sm_rank rank[3];               /* gate, up, down */
} sm_plan_effective;
void sm_plan_effective_settings(const sm_plan *p, const sm_plan_layer *pl, sm_plan_effective *out);

/* Model-dependent checks: fingerprint, layers that are MoE layers of the model, expert counts,
 * groups (each expert exactly once, indices in range, count = experts), cluster keys, integer
 * ranks within the cluster's maximum. Messages point into the file. */
int sm_plan_check_model(const sm_plan *p, const sm_model *m);

/* The document as YAML text (deterministic bytes) / written atomically to a file. */
int sm_plan_format(const sm_plan *p, char **text, size_t *len);
/* The same without comments: what a plan means, for hashing (comments are not read back). */
int sm_plan_format_bare(const sm_plan *p, char **text, size_t *len);
/* Written with sm_write_file_atomic (util/publish.h): a temporary file renamed over path; a
 * symbolic link keeps the link and replaces its target; a device or FIFO is written in place; a
 * directory is refused; nothing is published once a signal arrived. */
int sm_plan_write(const sm_plan *p, const char *path);

/* Parse "4G", "500M", "4GB", "1048576" (powers of 1024). */
int sm_parse_size(const char *s, uint64_t *out);

#endif
