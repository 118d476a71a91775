// AVX2 + FMA ALS kernels; this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cstdint>

#include "../simd/f32_avx2.hpp"
#include "kernels.hpp"

namespace llmrec::als::detail {
namespace {

using Isa = llmrec::simd::F32Avx2;

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx2(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void gather_apply_f32_avx2(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                           const float* c0, const float* c1, const float* v, float* out) {
  gather_apply_impl(Y, f, idx, n, c0, c1, v, out);
}

void symv_f32_avx2(const float* G, std::size_t f, const float* v, float* out) {
  symv_impl(G, f, v, out);
}

void rank_update_f32_avx2(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                          const float* w, float* A) {
  rank_update_impl(Y, f, idx, n, w, A);
}

}  // namespace llmrec::als::detail
