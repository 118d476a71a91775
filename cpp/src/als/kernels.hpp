// Internal: the per-ISA hot loops of the ALS solvers. Every kernel exists as a scalar
// baseline and, where compiled, as AVX2+FMA and AVX-512 versions; `active_kernels()`
// picks the set for the active SIMD level.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../simd/dot.hpp"

namespace llmrec::als::detail {

// Σ a[i]·b[i] over n floats.
using DotFn = float (*)(const float* a, const float* b, std::size_t n);

// out = Σ_k (c0[k] + c1[k]·(y_k·v)) y_k over the n rows y_k = Y + idx[k]·f.
// c0 == nullptr means 0 (then only the c1 term); c1 == nullptr means no dot product
// (then v is unused). out (f floats) is overwritten.
using GatherApplyFn = void (*)(const float* Y, std::size_t f, const int32_t* idx,
                               std::size_t n, const float* c0, const float* c1,
                               const float* v, float* out);

// A += Σ_k w[k] y_k y_kᵀ on the upper triangle (j >= i) of the row-major f × f matrix A;
// entries below the diagonal may be modified and must be ignored. idx == nullptr means
// rows 0 .. n-1 of Y; w == nullptr means every weight is 1.
using RankUpdateFn = void (*)(const float* Y, std::size_t f, const int32_t* idx,
                              std::size_t n, const float* w, float* A);

// out = G v for the symmetric, fully stored, row-major f × f matrix G.
using SymvFn = void (*)(const float* G, std::size_t f, const float* v, float* out);

// out[b] = G v[b] for b < m, each bit-identical to symv(G, f, v[b], out[b]); the vectors
// must not alias the outputs.
using SymvRowsFn = void (*)(const float* G, std::size_t f, const float* const* v, std::size_t m,
                            float* const* out);

struct Kernels {
  DotFn dot;
  GatherApplyFn gather_apply;
  RankUpdateFn rank_update;
  SymvFn symv;
  SymvRowsFn symv_rows;
};

// The scalar level's dot product is the library's shared one (same code, same sums).
using simd::dot_f32_scalar;
void gather_apply_f32_scalar(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                             const float* c0, const float* c1, const float* v, float* out);
void symv_f32_scalar(const float* G, std::size_t f, const float* v, float* out);
void symv_rows_f32_scalar(const float* G, std::size_t f, const float* const* v, std::size_t m,
                          float* const* out);
void rank_update_f32_scalar(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                            const float* w, float* A);

float dot_f32_avx2(const float* a, const float* b, std::size_t n);
void gather_apply_f32_avx2(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                           const float* c0, const float* c1, const float* v, float* out);
void symv_f32_avx2(const float* G, std::size_t f, const float* v, float* out);
void symv_rows_f32_avx2(const float* G, std::size_t f, const float* const* v, std::size_t m,
                        float* const* out);
void rank_update_f32_avx2(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                          const float* w, float* A);

float dot_f32_avx512(const float* a, const float* b, std::size_t n);
void gather_apply_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                             const float* c0, const float* c1, const float* v, float* out);
void symv_f32_avx512(const float* G, std::size_t f, const float* v, float* out);
void symv_rows_f32_avx512(const float* G, std::size_t f, const float* const* v, std::size_t m,
                          float* const* out);
void rank_update_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                            const float* w, float* A);

// The kernel set for the active SIMD level (read once per call by the solvers).
Kernels active_kernels();

}  // namespace llmrec::als::detail
