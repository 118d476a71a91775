// AVX-512 ALS kernels; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cstdint>

#include "../simd/f32_avx512.hpp"
#include "kernels.hpp"

namespace llmrec::als::detail {
namespace {

using Isa = llmrec::simd::F32Avx512;

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx512(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void gather_apply_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                             const float* c0, const float* c1, const float* v, float* out) {
  gather_apply_impl(Y, f, idx, n, c0, c1, v, out);
}

void symv_f32_avx512(const float* G, std::size_t f, const float* v, float* out) {
  symv_impl(G, f, v, out);
}

void rank_update_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                            const float* w, float* A) {
  rank_update_impl(Y, f, idx, n, w, A);
}

}  // namespace llmrec::als::detail
