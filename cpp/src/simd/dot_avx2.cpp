// AVX2 + FMA float dot-product kernels; this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cstdint>

#include "dot.hpp"
#include "f32_avx2.hpp"

namespace llmrec::simd {
namespace {

using Isa = F32Avx2;

#include "dot_simd.inl"

}  // namespace

float dot_f32_avx2(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

float dot_i8f32_avx2(const int8_t* a, const float* q, std::size_t n) { return dot_i8_impl(a, q, n); }

void max_dot_f32_avx2(const float* rows, std::size_t m, std::size_t d, const float* v,
                      float* best) {
  max_dot_impl(rows, m, d, v, best);
}

}  // namespace llmrec::simd
