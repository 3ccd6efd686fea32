/* Bilinear resampling over channels_last memory, forward and backward, fp32 or bf16: PyTorch's
 * F.interpolate(x, size, mode="bilinear", align_corners=False), source indices and weights
 * computed in float as PyTorch computes them.
 *
 * The model upsamples every decoder stage's input and its four side outputs; on a CPU PyTorch's
 * channels_last kernels for these shapes (1 to 16 channels) took a tenth of a bf16 training
 * step, most of it in the backward's scattered adds (measured). Both directions here are
 * separable: a pass along the rows' pixels into a float buffer, then a pass along the columns
 * whose rows are long contiguous vectors. The backward gathers instead of scattering: each
 * input index sums its list of (output index, weight) pairs, in output order.
 *
 * Each output is its own sum, its terms in a fixed order, so every instruction level gives the
 * same bits (tested); the order is not PyTorch's, so values equal the stock kernel's within
 * float rounding (tested). One thread, as the batch-norm kernel (_batchnorm.c says why).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_native.h"

/* Output index o reads inputs i0 and i1 with weights l0 and l1. */
typedef struct {
    int64_t i0, i1;
    float l0, l1;
} tap_t;

/* An input index's share of the outputs: pairs [start[i], start[i + 1]) of (o, w). */
typedef struct {
    int64_t *start, *o;
    float *w;
} gather_t;

/* PyTorch's compute_source_index_and_lambda for align_corners=False and no scale given. */
static void taps(int64_t in, int64_t out, tap_t *t) {
    const float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        if (in == out) {
            t[o] = (tap_t){o, o, 1.0f, 0.0f};
            continue;
        }
        float src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
        int64_t i0 = (int64_t)floorf(src);
        if (i0 > in - 1) i0 = in - 1;
        float l1 = src - (float)i0;
        l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
        t[o] = (tap_t){i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1};
    }
}

/* The taps turned around: for each input index, its (output, weight) pairs in output order
 * (an output's i0 pair before its i1 pair). Returns 0, or -1 when memory ran out. */
static int invert(const tap_t *t, int64_t in, int64_t out, gather_t *g) {
    g->start = (int64_t *)calloc((size_t)(in + 1), sizeof(int64_t));
    g->o = (int64_t *)malloc((size_t)(2 * out) * sizeof(int64_t));
    g->w = (float *)malloc((size_t)(2 * out) * sizeof(float));
    int64_t *fill = (int64_t *)malloc((size_t)in * sizeof(int64_t));
    if (!g->start || !g->o || !g->w || !fill) {
        free(fill);
        return -1;
    }
    for (int64_t o = 0; o < out; o++) {
        g->start[t[o].i0 + 1]++;
        g->start[t[o].i1 + 1]++;
    }
    for (int64_t i = 0; i < in; i++) {
        g->start[i + 1] += g->start[i];
        fill[i] = g->start[i];
    }
    for (int64_t o = 0; o < out; o++) {
        g->o[fill[t[o].i0]] = o;
        g->w[fill[t[o].i0]++] = t[o].l0;
        g->o[fill[t[o].i1]] = o;
        g->w[fill[t[o].i1]++] = t[o].l1;
    }
    free(fill);
    return 0;
}

static void release(gather_t *g) {
    free(g->start);
    free(g->o);
    free(g->w);
}

typedef struct {
    int bf16;
    int64_t n, ih, iw, oh, ow, c;
    const void *src; /* forward: x (n, ih, iw, c); backward: gy (n, oh, ow, c) */
    void *dst;       /* forward: y (n, oh, ow, c); backward: gx (n, ih, iw, c) */
    const tap_t *th, *tw;
    const gather_t *gh, *gw;
    float *buf; /* forward: ih x ow x c; backward: oh x iw x c */
    float *acc; /* backward: one input row, iw x c */
    float *row; /* one source row in float: forward iw x c, backward ow x c */
} rs_t;

/* out += w * in over n floats. */
INLINE void axpy(float *restrict out, const float *restrict in, float w, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] += w * in[i];
}

/* Row r of the source (e elements) in float, so that the gathers below read plain floats. */
INLINE const float *source_row(const rs_t *j, const int bf16, int64_t r, int64_t e) {
    float *restrict out = j->row;
    for (int64_t i = 0; i < e; i++) out[i] = load(j->src, bf16, r + i);
    return out;
}

INLINE void forward_as(const rs_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, row = j->ow * c;
    for (int64_t n = 0; n < j->n; n++) {
        const int64_t in0 = n * j->ih * j->iw * c;
        for (int64_t y = 0; y < j->ih; y++) {
            float *restrict b = j->buf + y * row;
            const float *restrict s = source_row(j, bf16, in0 + y * j->iw * c, j->iw * c);
            for (int64_t x = 0; x < j->ow; x++) {
                const tap_t t = j->tw[x];
                for (int64_t ch = 0; ch < c; ch++)
                    b[x * c + ch] = t.l0 * s[t.i0 * c + ch] + t.l1 * s[t.i1 * c + ch];
            }
        }
        for (int64_t y = 0; y < j->oh; y++) {
            const tap_t t = j->th[y];
            const float *b0 = j->buf + t.i0 * row, *b1 = j->buf + t.i1 * row;
            const int64_t o = (n * j->oh + y) * row;
            for (int64_t e = 0; e < row; e++) store(j->dst, bf16, o + e, t.l0 * b0[e] + t.l1 * b1[e]);
        }
    }
}

INLINE void backward_as(const rs_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, row = j->iw * c;
    const gather_t *gh = j->gh, *gw = j->gw;
    for (int64_t n = 0; n < j->n; n++) {
        const int64_t out0 = n * j->oh * j->ow * c;
        for (int64_t y = 0; y < j->oh; y++) {
            float *restrict b = j->buf + y * row;
            const float *restrict s = source_row(j, bf16, out0 + y * j->ow * c, j->ow * c);
            for (int64_t x = 0; x < j->iw; x++) {
                float *restrict bx = b + x * c;
                for (int64_t ch = 0; ch < c; ch++) bx[ch] = 0.0f;
                const int64_t p1 = gw->start[x + 1];
                for (int64_t p = gw->start[x]; p < p1; p++) axpy(bx, s + gw->o[p] * c, gw->w[p], c);
            }
        }
        for (int64_t y = 0; y < j->ih; y++) {
            const int64_t o = (n * j->ih + y) * row;
            float *acc = j->acc;
            for (int64_t e = 0; e < row; e++) acc[e] = 0.0f;
            for (int64_t p = gh->start[y]; p < gh->start[y + 1]; p++)
                axpy(acc, j->buf + gh->o[p] * row, gh->w[p], row);
            for (int64_t e = 0; e < row; e++) store(j->dst, bf16, o + e, acc[e]);
        }
    }
}

/* Each direction with its dtype constant and the model's channel counts of 1 (the side
 * outputs), 8 and 16 constants too, so that the loops over a pixel's channels unroll. */
#define BY_SHAPE(NAME, FN)                        \
    INLINE void NAME(const rs_t *j) {             \
        const int b = j->bf16;                    \
        if (j->c == 1) b ? FN(j, 1, 1) : FN(j, 0, 1);    \
        else if (j->c == 8) b ? FN(j, 1, 8) : FN(j, 0, 8); \
        else if (j->c == 16) b ? FN(j, 1, 16) : FN(j, 0, 16); \
        else b ? FN(j, 1, 0) : FN(j, 0, 0);       \
    }
BY_SHAPE(forward_body, forward_as)
BY_SHAPE(backward_body, backward_as)
DEFINE_LEVELS(rs_forward, forward_body, rs_t)
DEFINE_LEVELS(rs_backward, backward_body, rs_t)

/* x (n, ih, iw, c) -> y (n, oh, ow, c), fp32 (bf16 = 0) or bf16 (bf16 = 1). Returns 0, -1 when
 * memory ran out, -2 for a bad shape. */
int sirst_resample_forward(const void *x, int bf16, int64_t n, int64_t ih, int64_t iw, int64_t c,
                           int64_t oh, int64_t ow, void *y, int level) {
    if (n < 1 || ih < 1 || iw < 1 || c < 1 || oh < 1 || ow < 1) return -2;
    tap_t *th = (tap_t *)malloc((size_t)oh * sizeof(tap_t));
    tap_t *tw = (tap_t *)malloc((size_t)ow * sizeof(tap_t));
    float *buf = (float *)malloc((size_t)(ih * ow * c) * sizeof(float));
    float *row = (float *)malloc((size_t)(iw * c) * sizeof(float));
    int code = -1;
    if (th && tw && buf && row) {
        taps(ih, oh, th);
        taps(iw, ow, tw);
        rs_t j = {bf16, n, ih, iw, oh, ow, c, x, y, th, tw, NULL, NULL, buf, NULL, row};
        rs_forward(&j, sirst_level(level));
        code = 0;
    }
    free(th);
    free(tw);
    free(buf);
    free(row);
    return code;
}

/* The gradient of sirst_resample_forward: gy (n, oh, ow, c) -> gx (n, ih, iw, c). */
int sirst_resample_backward(const void *gy, int bf16, int64_t n, int64_t ih, int64_t iw,
                            int64_t c, int64_t oh, int64_t ow, void *gx, int level) {
    if (n < 1 || ih < 1 || iw < 1 || c < 1 || oh < 1 || ow < 1) return -2;
    tap_t *th = (tap_t *)malloc((size_t)oh * sizeof(tap_t));
    tap_t *tw = (tap_t *)malloc((size_t)ow * sizeof(tap_t));
    float *buf = (float *)malloc((size_t)(oh * iw * c) * sizeof(float));
    float *acc = (float *)malloc((size_t)(iw * c) * sizeof(float));
    float *row = (float *)malloc((size_t)(ow * c) * sizeof(float));
    gather_t gh = {NULL, NULL, NULL}, gw = {NULL, NULL, NULL};
    int code = -1;
    if (th && tw && buf && acc && row) {
        taps(ih, oh, th);
        taps(iw, ow, tw);
        if (invert(th, ih, oh, &gh) == 0 && invert(tw, iw, ow, &gw) == 0) {
            rs_t j = {bf16, n, ih, iw, oh, ow, c, gy, gx, th, tw, &gh, &gw, buf, acc, row};
            rs_backward(&j, sirst_level(level));
            code = 0;
        }
    }
    release(&gh);
    release(&gw);
    free(th);
    free(tw);
    free(buf);
    free(acc);
    free(row);
    return code;
}
