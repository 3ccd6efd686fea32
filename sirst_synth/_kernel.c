/* One image's IRSTD metrics in a single native pass (the fast path of sirst_synth.metrics).
 *
 * Same definitions and the same numbers as the Python path (`score_image`), which stays the
 * reference: targets are 8-connected components numbered in raster order of their first pixel
 * (as skimage's `label`), centroids are exact integer coordinate sums divided once by the area,
 * label targets in order take the first free predicted component closer than `match_distance`,
 * and Fa is counted by component identity and by area value (BasicIRSTD).
 *
 * Plain C with no Python API: loaded with ctypes. Compiled optionally at install; without it
 * the Python path runs.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t n;
    int64_t *area;
    double *cy, *cx;
    int64_t r0, c0, r1, c1; /* box of all target pixels, half-open; r1 == 0 when empty */
} comps_t;

/* Index of the first non-zero byte in row[0:w], or -1; 8 bytes at a time. */
static int64_t first_nonzero(const uint8_t *row, int64_t w) {
    int64_t c = 0;
    for (; c + 8 <= w; c += 8) {
        uint64_t word;
        memcpy(&word, row + c, 8);
        if (word) break;
    }
    for (; c < w; c++) {
        if (row[c]) return c;
    }
    return -1;
}

static void bbox(const uint8_t *img, int64_t h, int64_t w, int64_t stride, comps_t *out) {
    int64_t r0 = -1, r1 = -1, c0 = w, c1 = -1;
    for (int64_t r = 0; r < h; r++) {
        const uint8_t *row = img + r * stride;
        int64_t first = first_nonzero(row, w);
        if (first < 0) continue;
        if (r0 < 0) r0 = r;
        r1 = r;
        if (first < c0) c0 = first;
        for (int64_t c = w - 1; c > c1; c--) {
            if (row[c]) { c1 = c; break; }
        }
    }
    if (r0 < 0) {
        out->r0 = out->c0 = out->r1 = out->c1 = 0;
    } else {
        out->r0 = r0; out->r1 = r1 + 1; out->c0 = c0; out->c1 = c1 + 1;
    }
}

static int32_t find(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static void unite(int32_t *parent, int32_t a, int32_t b) {
    a = find(parent, a);
    b = find(parent, b);
    if (a < b) parent[b] = a; else if (b < a) parent[a] = b;
}

/* Label the box of target pixels (two-pass union-find, 8-connectivity) and gather stats. */
static int components(const uint8_t *img, int64_t h, int64_t w, int64_t stride, comps_t *out) {
    out->n = 0;
    out->area = NULL; out->cy = out->cx = NULL;
    bbox(img, h, w, stride, out);
    if (out->r1 == 0) return 0;
    int64_t bh = out->r1 - out->r0, bw = out->c1 - out->c0;
    int32_t *lab = (int32_t *)calloc((size_t)(bh * bw), sizeof(int32_t));
    int64_t cap = 64, next = 1;
    int32_t *parent = (int32_t *)malloc((size_t)cap * sizeof(int32_t));
    if (!lab || !parent) { free(lab); free(parent); return -1; }
    parent[0] = 0;
    for (int64_t r = 0; r < bh; r++) {
        const uint8_t *row = img + (r + out->r0) * stride + out->c0;
        int32_t *L = lab + r * bw, *U = r ? lab + (r - 1) * bw : NULL;
        for (int64_t c = 0; c < bw; c++) {
            if (!row[c]) continue;
            int32_t nb[4], k = 0;
            if (c && L[c - 1]) nb[k++] = L[c - 1];
            if (U) {
                if (c && U[c - 1]) nb[k++] = U[c - 1];
                if (U[c]) nb[k++] = U[c];
                if (c + 1 < bw && U[c + 1]) nb[k++] = U[c + 1];
            }
            if (!k) {
                if (next == cap) {
                    cap *= 2;
                    int32_t *p = (int32_t *)realloc(parent, (size_t)cap * sizeof(int32_t));
                    if (!p) { free(lab); free(parent); return -1; }
                    parent = p;
                }
                parent[next] = (int32_t)next;
                L[c] = (int32_t)next++;
            } else {
                L[c] = nb[0];
                for (int32_t i = 1; i < k; i++) unite(parent, nb[0], nb[i]);
            }
        }
    }
    /* Final ids in raster order of each component's first pixel, with exact integer sums. */
    int32_t *final_id = (int32_t *)calloc((size_t)next, sizeof(int32_t));
    int64_t *sr = (int64_t *)calloc((size_t)next, sizeof(int64_t));
    int64_t *sc = (int64_t *)calloc((size_t)next, sizeof(int64_t));
    out->area = (int64_t *)calloc((size_t)next, sizeof(int64_t));
    if (!final_id || !sr || !sc || !out->area) {
        free(lab); free(parent); free(final_id); free(sr); free(sc); free(out->area);
        out->area = NULL;
        return -1;
    }
    int64_t n = 0;
    for (int64_t r = 0; r < bh; r++) {
        int32_t *L = lab + r * bw;
        for (int64_t c = 0; c < bw; c++) {
            if (!L[c]) continue;
            int32_t root = find(parent, L[c]);
            if (!final_id[root]) final_id[root] = (int32_t)(++n);
            int32_t id = final_id[root] - 1;
            out->area[id] += 1;
            sr[id] += r + out->r0;
            sc[id] += c + out->c0;
        }
    }
    out->n = n;
    out->cy = (double *)malloc((size_t)(n ? n : 1) * sizeof(double));
    out->cx = (double *)malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!out->cy || !out->cx) {
        free(lab); free(parent); free(final_id); free(sr); free(sc);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        out->cy[i] = (double)sr[i] / (double)out->area[i];
        out->cx[i] = (double)sc[i] / (double)out->area[i];
    }
    free(lab); free(parent); free(final_id); free(sr); free(sc);
    return 0;
}

static void release(comps_t *c) {
    free(c->area); free(c->cy); free(c->cx);
}

/* out[7] = inter, union, targets, detected, fa_pixels, fa_pixels_dnanet, pixels.
 * Returns 0, or -1 when memory ran out. */
int sirst_score_image(const uint8_t *pred, int64_t pred_stride, const uint8_t *label,
                      int64_t label_stride, int64_t h, int64_t w, double match_distance,
                      int64_t *out) {
    comps_t pc = {0}, lc = {0};
    if (components(pred, h, w, pred_stride, &pc) || components(label, h, w, label_stride, &lc)) {
        release(&pc); release(&lc);
        return -1;
    }
    int64_t inter = 0, sum_p = 0, sum_l = 0;
    if (pc.n && lc.n) {
        int64_t r0 = pc.r0 > lc.r0 ? pc.r0 : lc.r0, r1 = pc.r1 < lc.r1 ? pc.r1 : lc.r1;
        int64_t c0 = pc.c0 > lc.c0 ? pc.c0 : lc.c0, c1 = pc.c1 < lc.c1 ? pc.c1 : lc.c1;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *a = pred + r * pred_stride, *b = label + r * label_stride;
            for (int64_t c = c0; c < c1; c++) inter += (a[c] != 0) & (b[c] != 0);
        }
    }
    for (int64_t i = 0; i < pc.n; i++) sum_p += pc.area[i];
    for (int64_t i = 0; i < lc.n; i++) sum_l += lc.area[i];
    uint8_t *matched = (uint8_t *)calloc((size_t)(pc.n ? pc.n : 1), 1);
    if (!matched) { release(&pc); release(&lc); return -1; }
    int64_t detected = 0;
    for (int64_t i = 0; i < lc.n; i++) {
        for (int64_t j = 0; j < pc.n; j++) {
            if (matched[j]) continue;
            double dy = lc.cy[i] - pc.cy[j], dx = lc.cx[i] - pc.cx[j];
            double d2 = dy * dy;
            d2 = d2 + dx * dx; /* two roundings, as numpy's (diff**2).sum() */
            if (sqrt(d2) < match_distance) { matched[j] = 1; detected++; break; }
        }
    }
    /* Areas of matched components (at most one per label target) for the area-value Fa. */
    int64_t *matched_area = (int64_t *)malloc((size_t)(detected ? detected : 1) * sizeof(int64_t));
    if (!matched_area) { free(matched); release(&pc); release(&lc); return -1; }
    int64_t m = 0;
    for (int64_t j = 0; j < pc.n; j++) {
        if (matched[j]) matched_area[m++] = pc.area[j];
    }
    int64_t fa_id = 0, fa_compat = 0;
    for (int64_t j = 0; j < pc.n; j++) {
        if (matched[j]) continue;
        fa_id += pc.area[j];
        int same = 0;
        for (int64_t k = 0; k < m && !same; k++) same = matched_area[k] == pc.area[j];
        if (!same) fa_compat += pc.area[j];
    }
    free(matched_area);
    out[0] = inter; out[1] = sum_p + sum_l - inter; out[2] = lc.n; out[3] = detected;
    out[4] = fa_id; out[5] = fa_compat; out[6] = h * w;
    free(matched); release(&pc); release(&lc);
    return 0;
}
