/* Bilinear resampling over channels_last memory, forward and backward, fp32 or bf16: PyTorch's
 * F.interpolate(x, size, mode="bilinear", align_corners=False), source indices and weights
 * computed in float as PyTorch computes them.
 *
 * The model upsamples every decoder stage's input and its four side outputs; on a CPU PyTorch's
 * channels_last kernels for these shapes (1 to 16 channels) took a tenth of a bf16 training
 * step, most of it in the backward's scattered adds (measured). Both directions here are
 * separable: a pass along the rows' pixels into a float buffer, then a pass along the columns
 * whose rows are long contiguous vectors. Both are one gather: each destination index sums
 * its list of (source index, weight) pairs, two taps forward, and backward the taps turned
 * around (in output order), so the backward gathers its adds instead of scattering them.
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

/* For each index of a destination axis, its (source index, weight) pairs [start[i],
 * start[i + 1]), summed in that order. */
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

/* The gather of one axis of length `in` -> `out`: forward, each output its two taps (i0, then
 * i1); backward (the taps turned around), each input its (output, weight) pairs in output
 * order, an output's i0 pair before its i1 pair. Returns 0, or -1 when memory ran out. */
static int gather(int64_t in, int64_t out, int backward, gather_t *g) {
    const int64_t n = backward ? in : out;
    tap_t *t = (tap_t *)malloc((size_t)out * sizeof(tap_t));
    int64_t *fill = (int64_t *)malloc((size_t)n * sizeof(int64_t));
    g->start = (int64_t *)calloc((size_t)(n + 1), sizeof(int64_t));
    g->o = (int64_t *)malloc((size_t)(2 * out) * sizeof(int64_t));
    g->w = (float *)malloc((size_t)(2 * out) * sizeof(float));
    int ok = t && fill && g->start && g->o && g->w;
    if (ok) {
        taps(in, out, t);
        for (int64_t o = 0; o < out; o++) {
            g->start[(backward ? t[o].i0 : o) + 1]++;
            g->start[(backward ? t[o].i1 : o) + 1]++;
        }
        for (int64_t i = 0; i < n; i++) {
            g->start[i + 1] += g->start[i];
            fill[i] = g->start[i];
        }
        for (int64_t o = 0; o < out; o++) {
            int64_t a = fill[backward ? t[o].i0 : o]++;
            g->o[a] = backward ? o : t[o].i0;
            g->w[a] = t[o].l0;
            int64_t b = fill[backward ? t[o].i1 : o]++;
            g->o[b] = backward ? o : t[o].i1;
            g->w[b] = t[o].l1;
        }
    }
    free(t);
    free(fill);
    return ok ? 0 : -1;
}

static void release(gather_t *g) {
    free(g->start);
    free(g->o);
    free(g->w);
}

/* One resampling, source (n, sh, sw, c) to destination (n, dh, dw, c): the forward (source x,
 * destination y) or the backward (source gy, destination gx). */
typedef struct {
    int bf16;
    int64_t n, sh, sw, dh, dw, c;
    const void *src;
    void *dst;
    const gather_t *gh, *gw; /* each destination row / column: its source rows / columns */
    float *buf;              /* sh x dw x c: the source resampled along its rows */
    float *acc;              /* one destination row, dw x c */
    float *row;              /* one source row in float, sw x c */
} rs_t;

/* out += w * in over n floats. */
INLINE void axpy(float *restrict out, const float *restrict in, float w, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] += w * in[i];
}

/* Along the rows into buf (each source row converted to float first, so that the gathers
 * read plain floats), then along the columns, whose rows are long contiguous vectors; every
 * sum starts from zero and adds its pairs in order, rounding once at the store. */
INLINE void resample_as(const rs_t *j, const int bf16, const int64_t cc) {
    const int64_t c = cc ? cc : j->c, srow = j->sw * c, drow = j->dw * c;
    const gather_t *gh = j->gh, *gw = j->gw;
    for (int64_t n = 0; n < j->n; n++) {
        for (int64_t y = 0; y < j->sh; y++) {
            float *restrict s = j->row;
            const int64_t r = (n * j->sh + y) * srow;
            for (int64_t i = 0; i < srow; i++) s[i] = load(j->src, bf16, r + i);
            for (int64_t x = 0; x < j->dw; x++) {
                float *restrict bx = j->buf + y * drow + x * c;
                for (int64_t ch = 0; ch < c; ch++) bx[ch] = 0.0f;
                for (int64_t p = gw->start[x]; p < gw->start[x + 1]; p++)
                    axpy(bx, s + gw->o[p] * c, gw->w[p], c);
            }
        }
        for (int64_t y = 0; y < j->dh; y++) {
            float *restrict acc = j->acc;
            for (int64_t e = 0; e < drow; e++) acc[e] = 0.0f;
            for (int64_t p = gh->start[y]; p < gh->start[y + 1]; p++)
                axpy(acc, j->buf + gh->o[p] * drow, gh->w[p], drow);
            const int64_t o = (n * j->dh + y) * drow;
            for (int64_t e = 0; e < drow; e++) store(j->dst, bf16, o + e, acc[e]);
        }
    }
}

BY_DTYPE_AND_CHANNELS(resample_body, resample_as, rs_t)
DEFINE_LEVELS(resample, resample_body, rs_t)

/* Input (n, ih, iw, c) and output (n, oh, ow, c) sizes; forward: src x, dst y; backward: src
 * gy, dst gx. Returns 0, -1 when memory ran out, -2 for a bad shape. */
static int run(const void *src, void *dst, int bf16, int64_t n, int64_t ih, int64_t iw,
               int64_t c, int64_t oh, int64_t ow, int backward, int level) {
    if (n < 1 || ih < 1 || iw < 1 || c < 1 || oh < 1 || ow < 1) return -2;
    const int64_t sh = backward ? oh : ih, sw = backward ? ow : iw;
    const int64_t dh = backward ? ih : oh, dw = backward ? iw : ow;
    gather_t gh = {NULL, NULL, NULL}, gw = {NULL, NULL, NULL};
    float *buf = (float *)malloc((size_t)(sh * dw * c) * sizeof(float));
    float *acc = (float *)malloc((size_t)(dw * c) * sizeof(float));
    float *row = (float *)malloc((size_t)(sw * c) * sizeof(float));
    int code = -1;
    if (buf && acc && row && gather(ih, oh, backward, &gh) == 0 &&
        gather(iw, ow, backward, &gw) == 0) {
        rs_t j = {bf16, n, sh, sw, dh, dw, c, src, dst, &gh, &gw, buf, acc, row};
        resample(&j, sirst_level(level));
        code = 0;
    }
    release(&gh);
    release(&gw);
    free(buf);
    free(acc);
    free(row);
    return code;
}

/* x (n, ih, iw, c) -> y (n, oh, ow, c), fp32 (bf16 = 0) or bf16 (bf16 = 1). */
int sirst_resample_forward(const void *x, int bf16, int64_t n, int64_t ih, int64_t iw, int64_t c,
                           int64_t oh, int64_t ow, void *y, int level) {
    return run(x, y, bf16, n, ih, iw, c, oh, ow, 0, level);
}

/* The gradient of sirst_resample_forward: gy (n, oh, ow, c) -> gx (n, ih, iw, c). */
int sirst_resample_backward(const void *gy, int bf16, int64_t n, int64_t ih, int64_t iw,
                            int64_t c, int64_t oh, int64_t ow, void *gx, int level) {
    return run(gy, gx, bf16, n, ih, iw, c, oh, ow, 1, level);
}
