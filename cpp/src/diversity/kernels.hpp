// Internal: the per-ISA similarity kernels behind diversity::mmr. Each exists as a
// scalar baseline and, where compiled, as AVX2+FMA and AVX-512 versions.
#pragma once

#include <cstddef>

namespace llmrec::diversity::detail {

// Σ a[i]·b[i] over n floats.
using DotFn = float (*)(const float* a, const float* b, std::size_t n);

// best[r] = max(best[r], rows[r]·v) for the m contiguous rows of length d.
using MaxDotFn = void (*)(const float* rows, std::size_t m, std::size_t d, const float* v,
                          float* best);

struct Kernels {
  DotFn dot;
  MaxDotFn max_dot;
};

float dot_f32_scalar(const float* a, const float* b, std::size_t n);
void max_dot_f32_scalar(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best);
float dot_f32_avx2(const float* a, const float* b, std::size_t n);
void max_dot_f32_avx2(const float* rows, std::size_t m, std::size_t d, const float* v,
                      float* best);
float dot_f32_avx512(const float* a, const float* b, std::size_t n);
void max_dot_f32_avx512(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best);

// The kernels for the active SIMD level (read once per call).
Kernels active_kernels();

}  // namespace llmrec::diversity::detail
