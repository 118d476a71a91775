// Internal: the float dot-product kernels shared by every area that scores gathered rows
// (top-k rescoring, MMR diversity). Each exists as a scalar baseline and, where
// compiled, as AVX2+FMA and AVX-512 versions; `dot_kernels()` picks the active level's.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::simd {

// Σ a[i]·b[i] over n floats.
using DotF32Fn = float (*)(const float* a, const float* b, std::size_t n);

// Σ a[i]·q[i] over n int8 codes a (each converted exactly to float) and floats q.
using DotI8F32Fn = float (*)(const int8_t* a, const float* q, std::size_t n);

// best[r] = max(best[r], rows[r]·v) for the m contiguous rows of length d.
using MaxDotF32Fn = void (*)(const float* rows, std::size_t m, std::size_t d, const float* v,
                             float* best);

struct DotKernels {
  DotF32Fn dot;
  MaxDotF32Fn max_dot;
  DotI8F32Fn dot_i8;
};

// The kernels for the active SIMD level (read once per call by the callers).
DotKernels dot_kernels();

float dot_f32_scalar(const float* a, const float* b, std::size_t n);
float dot_i8f32_scalar(const int8_t* a, const float* q, std::size_t n);
float dot_i8f32_avx2(const int8_t* a, const float* q, std::size_t n);
float dot_i8f32_avx512(const int8_t* a, const float* q, std::size_t n);
void max_dot_f32_scalar(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best);
float dot_f32_avx2(const float* a, const float* b, std::size_t n);
void max_dot_f32_avx2(const float* rows, std::size_t m, std::size_t d, const float* v,
                      float* best);
float dot_f32_avx512(const float* a, const float* b, std::size_t n);
void max_dot_f32_avx512(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best);

}  // namespace llmrec::simd
