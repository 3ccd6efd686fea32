/* What the training kernels (_batchnorm.c, _attention.c, _resample.c) share: bf16 conversion
 * as PyTorch rounds it, one copy of each pass per x86 instruction level, and each pass
 * specialised for its dtype and the tiny model's channel counts. */
#ifndef SIRST_NATIVE_H
#define SIRST_NATIVE_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

INLINE float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as PyTorch does; branch-free, so that loops of it vectorise. */
INLINE uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t quiet_nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

/* A float as the nearest bf16 would hold it (what a bf16 tensor stores between two ops). */
INLINE float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

INLINE float load(const void *p, int bf16, int64_t i) {
    return bf16 ? bf16_to_float(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

INLINE void store(void *p, int bf16, int64_t i, float v) {
    if (bf16) ((uint16_t *)p)[i] = float_to_bf16(v);
    else ((float *)p)[i] = v;
}

/* Each pass is compiled for the baseline, AVX2 and AVX-512 (a wheel cannot assume the CPU),
 * the widest the CPU has picked per call: NAME(job, level) runs BODY(job), an always-inline
 * function, compiled once per level. The summation order is the same in all copies (only
 * independent sums run side by side, never partial sums of one) and -ffp-contract=off keeps
 * multiplies and adds apart, so the copies give the same bits (tested). */
#if defined(__x86_64__) && defined(__GNUC__)
#define X86_LEVELS 1
#define DEFINE_LEVELS(NAME, BODY, TYPE)                                                   \
    static void NAME##_base(const TYPE *j) { BODY(j); }                                   \
    __attribute__((target("avx2"))) static void NAME##_avx2(const TYPE *j) { BODY(j); }   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) static void NAME##_avx512( \
        const TYPE *j) {                                                                  \
        BODY(j);                                                                          \
    }                                                                                     \
    static void NAME(const TYPE *j, int level) {                                          \
        if (level == 2) NAME##_avx512(j);                                                 \
        else if (level == 1) NAME##_avx2(j);                                              \
        else NAME##_base(j);                                                              \
    }
#else
#define DEFINE_LEVELS(NAME, BODY, TYPE)                                                   \
    static void NAME(const TYPE *j, int level) {                                          \
        (void)level;                                                                      \
        BODY(j);                                                                          \
    }
#endif

/* NAME(job) runs FN(job, bf16, c) with its dtype constant, and the channel counts 1 (the side
 * outputs), 8 (full resolution) and 16 (half) constants too, so that the loops over a pixel's
 * channels unroll and the loops over pixels vectorise (c = 0: the count read at run time). The
 * job has fields bf16 and c. */
#define BY_DTYPE_AND_CHANNELS(NAME, FN, TYPE)                  \
    INLINE void NAME(const TYPE *j) {                          \
        const int b = j->bf16;                                 \
        if (j->c == 1) b ? FN(j, 1, 1) : FN(j, 0, 1);          \
        else if (j->c == 8) b ? FN(j, 1, 8) : FN(j, 0, 8);     \
        else if (j->c == 16) b ? FN(j, 1, 16) : FN(j, 0, 16);  \
        else b ? FN(j, 1, 0) : FN(j, 0, 0);                    \
    }

/* The widest instruction level at most `level` that this CPU has: 0 baseline, 1 AVX2,
 * 2 AVX-512 (a negative level: the widest there is). In _batchnorm.c. */
int sirst_level(int level);

#endif
