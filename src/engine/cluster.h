/* cluster: grouping a layer's experts (DESIGN §2.2).
 *
 *   k-means      k-means++ seeding and Lloyd iterations over expert outputs with
 *                d(i, c) = 1 − (1/m) Σ_t cos(Y_i(t), C_c(t)), C_c(t) the mean of the members'
 *                outputs. Seeding samples ∝ d² to the nearest chosen seed (d = 1 − S_ij);
 *                assignment ties go to the lower cluster; iteration stops when assignments
 *                repeat or after max_iter; an emptied cluster takes the expert farthest from
 *                its centroid among clusters of two or more (lowest index on ties). Restarts
 *                keep the lowest cost (earliest on ties). Deterministic for a seed.
 *   k-medoids    the same loop on a precomputed similarity matrix (distance 1 − S), for
 *                weight or router-logit similarity where no outputs exist.
 *   hierarchical average linkage (UPGMA) on a similarity matrix: repeatedly join the two
 *                clusters with the highest mean pairwise similarity (ties: lowest smallest
 *                members), HC-SMoE's choice.
 *   dominant     M-SMoE's grouping: the k most-routed experts are the groups' centres and every
 *                other expert joins the centre it is most similar to. Rarely-routed experts join
 *                busy ones (whose frequency-weighted merge they barely change) instead of two
 *                busy experts being merged together, which is what hurts on models with skewed
 *                routing.
 *   reap         REAM-style: the same with the k most salient experts (REAP saliency,
 *                saliency.h) as centres — an expert that is routed rarely but strongly, with
 *                large outputs, stays a centre; one routed often with small weight joins one.
 * Cluster labels are canonical: numbered 0..k−1 in order of each cluster's smallest member.
 * The clustering cost J = Σ_i d(i, c(i)) drives non-uniform allocation (allocate.h). */
#ifndef SM_CLUSTER_H
#define SM_CLUSTER_H

#include <stdint.h>

#include "util/monitor.h"
#include "engine/similarity.h"

typedef enum { SM_CLUSTER_KMEANS = 0, SM_CLUSTER_HIERARCHICAL, SM_CLUSTER_KMEDOIDS, SM_CLUSTER_DOMINANT,
               SM_CLUSTER_REAP } sm_cluster_algo;

const char *sm_cluster_algo_name(sm_cluster_algo a); /* "kmeans", "hierarchical", "kmedoids", "dominant", "reap" */
int sm_cluster_algo_parse(const char *name, sm_cluster_algo *out);

typedef struct sm_kmeans_opts {
    uint64_t seed;
    int max_iter; /* 0 = 100 */
    int restarts; /* 0 = 4 (k-means), 1 (k-medoids) */
} sm_kmeans_opts;

typedef struct sm_kmeans_result {
    double cost;    /* J of the returned partition */
    int iterations; /* Lloyd iterations of the chosen restart */
} sm_kmeans_result;

/* k-means on expert outputs; `s` is their output similarity (sm_similarity_output), used for
 * seeding; pass NULL to have it computed. assign[n] receives canonical labels. */
int sm_kmeans_outputs(const sm_outputs *o, const double *s, int k, const sm_kmeans_opts *opts,
                      const sm_monitor *mon, int *assign, sm_kmeans_result *res);

/* k-medoids on an n×n similarity; cost = Σ_i (1 − S_{i, medoid(i)}). */
int sm_kmedoids(const double *s, int n, int k, const sm_kmeans_opts *opts, int *assign,
                sm_kmeans_result *res);

/* One join of the average-linkage dendrogram: clusters whose smallest members are a < b. */
typedef struct sm_hjoin {
    int a, b;
    double similarity; /* mean pairwise similarity at the join */
} sm_hjoin;

/* All n−1 joins, in order. */
int sm_hcluster_tree(const double *s, int n, sm_hjoin *joins);
/* The partition into k clusters after the first n−k joins (canonical labels). */
int sm_hcluster_cut(const sm_hjoin *joins, int n, int k, int *assign);
/* tree + cut. */
int sm_hcluster_average(const double *s, int n, int k, int *assign);

/* dominant: centres are the k experts with the highest freq (ties: lower index); each other
 * expert i joins the centre e with the highest s[i·n + e] (ties: lower index). */
int sm_cluster_dominant(const double *freq, const double *s, int n, int k, int *assign);
/* reap: sm_cluster_dominant with the saliencies in place of the frequencies. */
int sm_cluster_reap(const double *saliency, const double *s, int n, int k, int *assign);

/* J = Σ_i [1 − (1/m) Σ_t cos(Y_i(t), C_{c(i)}(t))] for a partition into k clusters. */
int sm_cluster_cost(const sm_outputs *o, const int *assign, int k, const sm_monitor *mon,
                    double *cost);

/* J(k) for k = k_lo..k_hi (j has n+1 entries, indexed by k; others untouched). KMEANS runs
 * k-means per k (opts), HIERARCHICAL cuts one dendrogram of `s`. */
int sm_cluster_cost_curve(const sm_outputs *o, const double *s, sm_cluster_algo algo, int k_lo,
                          int k_hi, const sm_kmeans_opts *opts, const sm_monitor *mon, double *j);

/* Relabel in order of first occurrence; returns the number of clusters (−1 with a message for
 * a label outside [0, n]). */
int sm_cluster_canonical(int *assign, int n);

/* Adjusted Rand index of two partitions (1 = identical up to labels). Labels must be in
 * [0, n). Returns 1 when both are trivial and equal. */
double sm_adjusted_rand(const int *a, const int *b, int n);

#endif
