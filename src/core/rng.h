/* rng.h - the one random stream of the tree: SplitMix64 (Steele et al. 2014) and its
 * finaliser, plus FNV-1a for turning names into seeds. Prefix rmu_rng_ / rmu_. Every
 * state is the caller's own (no global generator), so runs are reproducible by seed. */
#ifndef RMU_RNG_H
#define RMU_RNG_H

#include <stddef.h>
#include <stdint.h>

#define RMU_GOLDEN64 0x9e3779b97f4a7c15ull

/* SplitMix64's output function: a bijective 64-bit mix. */
static inline uint64_t rmu_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Next value of the SplitMix64 stream whose state is *s. */
static inline uint64_t rmu_rng_next(uint64_t *s) { return rmu_mix64(*s += RMU_GOLDEN64); }

/* Uniform double in [0, 1) with 53 random bits. */
static inline double rmu_rng_uniform(uint64_t *s) { return (rmu_rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform in [0, n), n >= 1, by rejection (no modulo bias). */
uint64_t rmu_rng_below(uint64_t *s, uint64_t n);

/* FNV-1a (64-bit) of n bytes, continuing from h (start with RMU_FNV_INIT). */
#define RMU_FNV_INIT 0xcbf29ce484222325ull
uint64_t rmu_fnv1a(uint64_t h, const void *data, size_t n);

#endif
