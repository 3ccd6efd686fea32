/* Training-mode batch norm over channels_last memory, forward and backward, fp32 or bf16.
 *
 * The model's full-resolution stage has 8 channels; PyTorch's channels_last kernel vectorises
 * across channels and runs several times slower per element there than at 16. Viewed as an
 * (m, c) row-major array (m = N * H * W), a training step of batch norm is four passes over
 * memory: the sums for the statistics, the normalisation, the sums for the gradient, the input
 * gradient. Each pass here streams the array once.
 *
 * Sums run in double over blocks of rows, added in block order; statistics are formed from
 * sums shifted by the first row (no cancellation), then rounded to float; elementwise work is
 * in float, as PyTorch's CPU kernel does, bf16 rounded to nearest even.
 *
 * One thread: between two of PyTorch's parallel ops its OpenMP workers still spin on the other
 * cores, and a second thread of ours there made a training step slower (measured).
 *
 * Plain C with no Python API, loaded with ctypes beside the metrics kernel.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_native.h"

#define BLOCK 2048 /* rows per partial sum (in double, added in block order) */

/* One pass over m rows of c channels. */
typedef struct {
    int kind;          /* 0: forward sums, 1: normalise, 2: backward sums, 3: input gradient */
    int bf16;
    int64_t c, m;
    const void *x, *dy;
    void *out;
    const float *shift, *scale, *offset; /* per channel: see each pass */
    const float *mean, *k1, *k2;         /* backward: dx = (dy - k1 - (x - mean) * k2) * scale */
    double *partial;                      /* [block][2 * c] */
} job_t;

/* Sums of (a, a^2) with a = x - shift (kind 0) or of (dy, dy * (x - mean)) (kind 2) over one
 * element, in double. */
INLINE void add_sums(const job_t *j, const int kind, const int bf16, int64_t i, double shift,
                     double *s1, double *s2) {
    double a = (double)load(j->x, bf16, i) - shift;
    if (kind == 0) {
        *s1 += a;
        *s2 += a * a;
    } else {
        double g = (double)load(j->dy, bf16, i);
        *s1 += g;
        *s2 += g * a;
    }
}

/* y = (x - mean) * scale + offset (kind 1), or dx = (dy - k1 - (x - mean) * k2) * scale
 * (kind 3), for element i of channel k. */
INLINE void put_element(const job_t *j, const int kind, const int bf16, int64_t i,
                        const float *mean, const float *scale, const float *offset,
                        const float *k1, const float *k2, int64_t k) {
    float x = load(j->x, bf16, i);
    float v;
    if (kind == 1) {
        v = (x - mean[k]) * scale[k] + offset[k];
    } else {
        float g = load(j->dy, bf16, i);
        v = (g - k1[k] - (x - mean[k]) * k2[k]) * scale[k];
    }
    store(j->out, bf16, i, v);
}

/* The block's elements run through `lanes` double sums, a multiple of c (64 where c divides
 * 64, else the first multiple of c past 64): element i of a block into lane (i - block start)
 * % lanes, whose channel is lane % c. Each lane adds its elements in order and the lanes fold
 * into their channels in lane order. A fixed number of independent sums vectorises at any
 * width with the same order of additions, so the same bits at every level. */
#define MAX_LANES 127 /* 64 + c - 1 for c <= 64 */
INLINE void lane_sums_as(const job_t *j, const int kind, const int bf16, const int64_t lanes) {
    const int64_t c = j->c, n = j->m * c, block = (int64_t)BLOCK * c;
    double shift[MAX_LANES];
    for (int64_t l = 0; l < lanes; l++) shift[l] = (double)j->shift[l % c];
    for (int64_t b0 = 0; b0 < n; b0 += block) {
        int64_t b1 = b0 + block < n ? b0 + block : n, i = b0;
        double s1[MAX_LANES] = {0.0}, s2[MAX_LANES] = {0.0};
        for (; i + lanes <= b1; i += lanes) {
            for (int64_t l = 0; l < lanes; l++)
                add_sums(j, kind, bf16, i + l, shift[l], &s1[l], &s2[l]);
        }
        for (int64_t l = 0; i < b1; i++, l++) add_sums(j, kind, bf16, i, shift[l], &s1[l], &s2[l]);
        double *p = j->partial + (b0 / block) * 2 * c;
        for (int64_t k = 0; k < 2 * c; k++) p[k] = 0.0;
        for (int64_t l = 0; l < lanes; l++) {
            p[l % c] += s1[l];
            p[c + l % c] += s2[l];
        }
    }
}

/* The elementwise passes in the same lanes, each lane with its channel's constants. */
INLINE void lane_elementwise_as(const job_t *j, const int kind, const int bf16,
                                const int64_t lanes) {
    const int64_t c = j->c, n = j->m * c;
    float mean[MAX_LANES], scale[MAX_LANES], offset[MAX_LANES], k1[MAX_LANES], k2[MAX_LANES];
    for (int64_t l = 0; l < lanes; l++) {
        mean[l] = j->mean[l % c];
        scale[l] = j->scale[l % c];
        offset[l] = kind == 1 ? j->offset[l % c] : 0.0f;
        k1[l] = kind == 3 ? j->k1[l % c] : 0.0f;
        k2[l] = kind == 3 ? j->k2[l % c] : 0.0f;
    }
    int64_t i = 0;
    for (; i + lanes <= n; i += lanes) {
        for (int64_t l = 0; l < lanes; l++)
            put_element(j, kind, bf16, i + l, mean, scale, offset, k1, k2, l);
    }
    for (int64_t l = 0; i < n; i++, l++)
        put_element(j, kind, bf16, i, mean, scale, offset, k1, k2, l);
}

/* Each pass with its kind and dtype constant, and 64 lanes (the model's channel counts) a
 * constant too, so each is vectorised. */
#define SPECIALISE(NAME, FN, K)                                   \
    INLINE void NAME(const job_t *j) {                            \
        if (64 % j->c == 0) {                                     \
            if (j->bf16) FN(j, K, 1, 64);                         \
            else FN(j, K, 0, 64);                                 \
        } else {                                                  \
            int64_t lanes = j->c * ((64 + j->c - 1) / j->c);      \
            if (j->bf16) FN(j, K, 1, lanes);                      \
            else FN(j, K, 0, lanes);                              \
        }                                                         \
    }
SPECIALISE(forward_sums_body, lane_sums_as, 0)
SPECIALISE(normalise_body, lane_elementwise_as, 1)
SPECIALISE(backward_sums_body, lane_sums_as, 2)
SPECIALISE(input_grad_body, lane_elementwise_as, 3)
DEFINE_LEVELS(forward_sums, forward_sums_body, job_t)
DEFINE_LEVELS(normalise, normalise_body, job_t)
DEFINE_LEVELS(backward_sums, backward_sums_body, job_t)
DEFINE_LEVELS(input_grad, input_grad_body, job_t)

/* Declared, with what it means, in _native.h. */
int sirst_level(int level) {
    int best = 0;
#ifdef X86_LEVELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) best = 1;
    if (best == 1 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        best = 2;
#endif
    return level < 0 || level > best ? best : level;
}

/* Adds the block partials in order into out[2 * c] (double). */
static void total(const double *partial, int64_t blocks, int64_t c, double *out) {
    for (int64_t k = 0; k < 2 * c; k++) out[k] = 0.0;
    for (int64_t b = 0; b < blocks; b++) {
        for (int64_t k = 0; k < 2 * c; k++) out[k] += partial[b * 2 * c + k];
    }
}

/* x, y: (m, c), fp32 (bf16 = 0) or bf16 (bf16 = 1). weight, bias: c floats. Writes y, and per
 * channel the batch mean, the biased variance and 1 / sqrt(var + eps). c <= 64.
 * Returns 0, -1 when memory ran out, -2 for a bad shape. */
int sirst_bn_forward(const void *x, int bf16, int64_t m, int64_t c, const float *weight,
                     const float *bias, double eps, void *y, float *mean, float *var,
                     float *invstd, int level) {
    if (m < 1 || c < 1 || c > 64) return -2;
    level = sirst_level(level);
    int64_t blocks = (m + BLOCK - 1) / BLOCK;
    double *partial = (double *)malloc((size_t)(blocks * 2 * c) * sizeof(double));
    if (!partial) return -1;
    float shift[64], scale[64], offset[64];
    for (int64_t k = 0; k < c; k++) shift[k] = load(x, bf16, k);
    job_t j = {0, bf16, c, m, x, NULL, NULL, shift, NULL, NULL, NULL, NULL, NULL, partial};
    forward_sums(&j, level);
    double sums[128];
    total(partial, blocks, c, sums);
    free(partial);
    for (int64_t k = 0; k < c; k++) {
        double d = sums[k] / (double)m;
        double v = sums[c + k] / (double)m - d * d;
        if (v < 0.0) v = 0.0;
        mean[k] = (float)((double)shift[k] + d);
        var[k] = (float)v;
        invstd[k] = (float)(1.0 / sqrt(v + eps));
        scale[k] = invstd[k] * weight[k];
        offset[k] = bias[k];
    }
    job_t n = {1, bf16, c, m, x, NULL, y, NULL, scale, offset, mean, NULL, NULL, NULL};
    normalise(&n, level);
    return 0;
}

/* The gradients of sirst_bn_forward given dy (m, c) and the forward's mean and invstd:
 * dweight = sum(dy * xhat), dbias = sum(dy), and dx (skipped where dx is NULL).
 * Returns 0, -1 when memory ran out, -2 for a bad shape. */
int sirst_bn_backward(const void *x, const void *dy, int bf16, int64_t m, int64_t c,
                      const float *mean, const float *invstd, const float *weight, void *dx,
                      float *dweight, float *dbias, int level) {
    if (m < 1 || c < 1 || c > 64) return -2;
    level = sirst_level(level);
    int64_t blocks = (m + BLOCK - 1) / BLOCK;
    double *partial = (double *)malloc((size_t)(blocks * 2 * c) * sizeof(double));
    if (!partial) return -1;
    job_t j = {2, bf16, c, m, x, dy, NULL, mean, NULL, NULL, NULL, NULL, NULL, partial};
    backward_sums(&j, level);
    double sums[128];
    total(partial, blocks, c, sums);
    free(partial);
    float k1[64], k2[64], scale[64];
    for (int64_t k = 0; k < c; k++) {
        double is = (double)invstd[k];
        dbias[k] = (float)sums[k];
        dweight[k] = (float)(sums[c + k] * is);
        k1[k] = (float)(sums[k] / (double)m);
        k2[k] = (float)(sums[c + k] / (double)m * is * is);
        scale[k] = invstd[k] * weight[k];
    }
    if (dx) {
        job_t g = {3, bf16, c, m, x, dy, dx, NULL, scale, NULL, mean, k1, k2, NULL};
        input_grad(&g, level);
    }
    return 0;
}
