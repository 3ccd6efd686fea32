/* Spatial attention (CBAM's, in the model's AFF decoder nodes) over channels_last memory,
 * forward and backward, fp32 or bf16:
 *
 *     y = x * sigmoid(conv_k([max_c x, mean_c x]))     (one k x k kernel, 2 maps in, 1 out)
 *
 * In PyTorch this is a channel max, a channel mean, a concatenation, a 2-to-1 convolution, a
 * sigmoid and a product broadcast over channels: on a CPU each a pass over memory, and the
 * convolution, with one output channel, runs far below oneDNN's usual rate (a quarter of a
 * bf16 training step at full resolution went here, measured). Here the forward is three
 * passes (pools, convolution and sigmoid, product) and the backward two.
 *
 * Rounding follows the stock ops: in bf16 the mean, the convolution's output, the sigmoid, the
 * gate's gradient and the maps' gradients are rounded where PyTorch stores them in bf16; every
 * sum runs in float (the kernel's gradient in double over rows). The summation order does not
 * depend on the instruction level, so every level gives the same bits (tested); it is not
 * oneDNN's order, so results equal the stock ops' within rounding (tested).
 *
 * One thread, as the batch-norm kernel (_batchnorm.c says why).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_native.h"

#define MAX_K 15 /* largest kernel size taken (the model's is 7) */

typedef struct {
    int bf16;
    int64_t n, h, w, c, k;       /* k odd; the maps carry a border of r = k / 2 zeros */
    const void *x, *gy;          /* (n, h, w, c) */
    void *y, *gx;                /* (n, h, w, c) */
    const float *kern;           /* [2][k][k]: the convolution's weights, as the op uses them */
    float *maps;                 /* [n][2][h + 2r][w + 2r]: channel max and mean, zero border */
    float *gate;                 /* [n][h][w]: the sigmoid */
    int16_t *arg;                /* [n][h][w]: the channel of the max (first of ties) */
    float *glogit;               /* [n][h + 2r][w + 2r]: the logits' gradient, zero border */
    float *flipped;              /* [2][k][k]: kern turned by 180 degrees */
    double *gkern;               /* [2][k][k] */
} att_t;

INLINE float maybe_round(float v, int bf16) { return bf16 ? round_bf16(v) : v; }

/* out[x] = sum over (i, dy, dx) of kern[i][dy][dx] * in[i][row + dy][x + dx], x < w: one output
 * row of a correlation over `nin` zero-bordered planes of `pw` columns. Each output is its own
 * sum, taken in (i, dy, dx) order, so rows vectorise along x with the same bits at any width. */
INLINE void correlate_row(const float *in, int64_t nin, int64_t plane, int64_t pw,
                          const float *kern, int64_t k, int64_t row, int64_t w, float *out) {
    for (int64_t x = 0; x < w; x++) out[x] = 0.0f;
    for (int64_t i = 0; i < nin; i++) {
        for (int64_t dy = 0; dy < k; dy++) {
            const float *src = in + i * plane + (row + dy) * pw;
            for (int64_t dx = 0; dx < k; dx++) {
                const float wv = kern[(i * k + dy) * k + dx];
                const float *s = src + dx;
                for (int64_t x = 0; x < w; x++) out[x] += wv * s[x];
            }
        }
    }
}

/* The channel max (and its channel) and mean of every pixel into the bordered maps: row by
 * row, channel by channel, so that the loops run along the row's pixels and vectorise. */
INLINE void pools(const att_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, r = j->k / 2, ph = j->h + 2 * r, pw = j->w + 2 * r;
    const int64_t w = j->w;
    const float inv = 1.0f / (float)c;
    for (int64_t n = 0; n < j->n; n++) {
        float *peak = j->maps + n * 2 * ph * pw, *mean = peak + ph * pw;
        for (int64_t y = 0; y < j->h; y++) {
            const int64_t p0 = (n * j->h + y) * w, o = (y + r) * pw + r;
            float *best = peak + o, *sum = mean + o;
            int16_t *at = j->arg + p0;
            for (int64_t x = 0; x < w; x++) {
                best[x] = sum[x] = load(j->x, bf16, (p0 + x) * c);
                at[x] = 0;
            }
            for (int64_t ch = 1; ch < c; ch++) {
                for (int64_t x = 0; x < w; x++) {
                    const float v = load(j->x, bf16, (p0 + x) * c + ch);
                    sum[x] += v;
                    at[x] = v > best[x] ? (int16_t)ch : at[x];
                    best[x] = v > best[x] ? v : best[x];
                }
            }
            for (int64_t x = 0; x < w; x++) sum[x] = maybe_round(sum[x] * inv, bf16);
        }
    }
}

INLINE void forward_as(const att_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, k = j->k, r = k / 2, ph = j->h + 2 * r, pw = j->w + 2 * r;
    pools(j, bf16, cc);
    float logit[j->w];
    for (int64_t n = 0; n < j->n; n++) {
        for (int64_t y = 0; y < j->h; y++) {
            correlate_row(j->maps + n * 2 * ph * pw, 2, ph * pw, pw, j->kern, k, y, j->w, logit);
            const int64_t p0 = (n * j->h + y) * j->w;
            float *gate = j->gate + p0;
            for (int64_t x = 0; x < j->w; x++)  /* expf: a call, kept out of the loop below */
                gate[x] = maybe_round(1.0f / (1.0f + expf(-maybe_round(logit[x], bf16))), bf16);
            for (int64_t x = 0; x < j->w; x++) {
                const int64_t e = (p0 + x) * c;
                for (int64_t ch = 0; ch < c; ch++)
                    store(j->y, bf16, e + ch, load(j->x, bf16, e + ch) * gate[x]);
            }
        }
    }
}

/* The gradient of the gate's logits (sigmoid'(z) times the channel sum of gy * x), into a
 * bordered plane, then the kernel's gradient: per tap, per row, 16 float lanes along x folded
 * in order into a double. */
INLINE void logit_grads(const att_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, k = j->k, r = k / 2, ph = j->h + 2 * r, pw = j->w + 2 * r;
    for (int64_t n = 0; n < j->n; n++) {
        float *gl = j->glogit + n * ph * pw;
        for (int64_t y = 0; y < j->h; y++) {
            const int64_t p0 = (n * j->h + y) * j->w;
            for (int64_t x = 0; x < j->w; x++) {
                const int64_t e = (p0 + x) * c;
                float sum = 0.0f;
                for (int64_t ch = 0; ch < c; ch++)
                    sum += load(j->gy, bf16, e + ch) * load(j->x, bf16, e + ch);
                const float g = j->gate[p0 + x];
                gl[(y + r) * pw + r + x] = maybe_round(maybe_round(sum, bf16) * (1.0f - g) * g, bf16);
            }
        }
    }
    for (int64_t t = 0; t < 2 * k * k; t++) j->gkern[t] = 0.0;
    for (int64_t n = 0; n < j->n; n++) {
        const float *gl = j->glogit + n * ph * pw, *m = j->maps + n * 2 * ph * pw;
        for (int64_t y = 0; y < j->h; y++) {
            const float *g = gl + (y + r) * pw + r;
            for (int64_t t = 0; t < 2 * k * k; t++) {
                const int64_t i = t / (k * k), dy = (t / k) % k, dx = t % k;
                const float *s = m + i * ph * pw + (y + dy) * pw + dx;
                float lane[16] = {0.0f};
                int64_t x = 0;
                for (; x + 16 <= j->w; x += 16)
                    for (int64_t l = 0; l < 16; l++) lane[l] += g[x + l] * s[x + l];
                for (int64_t l = 0; x < j->w; x++, l++) lane[l] += g[x] * s[x];
                double row = 0.0;
                for (int64_t l = 0; l < 16; l++) row += (double)lane[l];
                j->gkern[t] += row;
            }
        }
    }
}

/* gx = gy * gate + (the max's channel) * gpeak + gmean / c, with the maps' gradients a
 * correlation of the logits' gradient with the turned kernel. */
INLINE void input_grads(const att_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, k = j->k, r = k / 2, ph = j->h + 2 * r, pw = j->w + 2 * r;
    const float inv = 1.0f / (float)c;
    float gpeak[j->w], gmean[j->w];
    for (int64_t n = 0; n < j->n; n++) {
        const float *gl = j->glogit + n * ph * pw;
        for (int64_t y = 0; y < j->h; y++) {
            correlate_row(gl, 1, 0, pw, j->flipped, k, y, j->w, gpeak);
            correlate_row(gl, 1, 0, pw, j->flipped + k * k, k, y, j->w, gmean);
            const int64_t p0 = (n * j->h + y) * j->w;
            for (int64_t x = 0; x < j->w; x++) {
                const int64_t e = (p0 + x) * c;
                const float g = j->gate[p0 + x], gp = maybe_round(gpeak[x], bf16);
                const float gm = maybe_round(maybe_round(gmean[x], bf16) * inv, bf16);
                const int64_t at = j->arg[p0 + x];
                for (int64_t ch = 0; ch < c; ch++) {
                    float v = load(j->gy, bf16, e + ch) * g + gm;
                    store(j->gx, bf16, e + ch, ch == at ? v + gp : v);
                }
            }
        }
    }
}

BY_DTYPE_AND_CHANNELS(forward_body, forward_as, att_t)
BY_DTYPE_AND_CHANNELS(logit_grads_body, logit_grads, att_t)
BY_DTYPE_AND_CHANNELS(input_grads_body, input_grads, att_t)
DEFINE_LEVELS(att_forward, forward_body, att_t)
DEFINE_LEVELS(att_logit_grads, logit_grads_body, att_t)
DEFINE_LEVELS(att_input_grads, input_grads_body, att_t)

static int bad_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t k) {
    return n < 1 || h < 1 || w < 1 || c < 1 || c > INT16_MAX || k < 1 || k > MAX_K || k % 2 == 0;
}

/* x, y: (n, h, w, c) in fp32 (bf16 = 0) or bf16 (bf16 = 1); kern: 2 * k * k floats. Writes y,
 * and for the backward the bordered maps (n * 2 * (h + k - 1) * (w + k - 1) floats), the gate
 * (n * h * w floats) and the max's channel (n * h * w). Returns 0, -2 for a bad shape. */
int sirst_sa_forward(const void *x, int bf16, int64_t n, int64_t h, int64_t w, int64_t c,
                     const float *kern, int64_t k, void *y, float *maps, float *gate,
                     int16_t *arg, int level) {
    if (bad_shape(n, h, w, c, k)) return -2;
    memset(maps, 0, (size_t)(n * 2 * (h + k - 1) * (w + k - 1)) * sizeof(float));
    att_t j = {bf16, n, h, w, c, k, x, NULL, y, NULL, kern, maps, gate, arg, NULL, NULL, NULL};
    att_forward(&j, sirst_level(level));
    return 0;
}

/* The gradients of sirst_sa_forward for gy: gx (n, h, w, c) and gkern (2 * k * k floats), from
 * the forward's x, maps, gate and arg. Returns 0, -1 when memory ran out, -2 for a bad shape. */
int sirst_sa_backward(const void *x, const void *gy, int bf16, int64_t n, int64_t h, int64_t w,
                      int64_t c, const float *kern, int64_t k, const float *maps,
                      const float *gate, const int16_t *arg, void *gx, float *gkern, int level) {
    if (bad_shape(n, h, w, c, k)) return -2;
    level = sirst_level(level);
    size_t plane = (size_t)((h + k - 1) * (w + k - 1));
    float *glogit = (float *)calloc((size_t)n * plane, sizeof(float));
    if (!glogit) return -1;
    float flipped[2 * MAX_K * MAX_K];
    for (int64_t i = 0; i < 2; i++)
        for (int64_t t = 0; t < k * k; t++) flipped[i * k * k + t] = kern[i * k * k + k * k - 1 - t];
    double sums[2 * MAX_K * MAX_K];
    att_t j = {bf16, n, h, w, c, k, x, gy, NULL, gx, kern, (float *)maps, (float *)gate,
               (int16_t *)arg, glogit, flipped, sums};
    att_logit_grads(&j, level);
    for (int64_t t = 0; t < 2 * k * k; t++) gkern[t] = (float)sums[t];
    if (gx) att_input_grads(&j, level);
    free(glogit);
    return 0;
}
