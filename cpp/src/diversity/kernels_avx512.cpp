// AVX-512 (F, DQ, BW, VL) similarity kernels; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cstdint>

#include "../simd/f32_avx512.hpp"
#include "kernels.hpp"

namespace llmrec::diversity::detail {
namespace {

using Isa = llmrec::simd::F32Avx512;

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx512(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void max_dot_f32_avx512(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best) {
  max_dot_impl(rows, m, d, v, best);
}

}  // namespace llmrec::diversity::detail
