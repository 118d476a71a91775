// Baseline kernels: plain C++ for the generic target (SSE2 on x86-64).
#include "kernels.hpp"

namespace llmrec::als::detail {

namespace {
inline const float* row_of(const float* Y, std::size_t f, const int32_t* idx, std::size_t k) {
  return Y + (idx ? static_cast<std::size_t>(idx[k]) : k) * f;
}
}  // namespace

void gather_apply_f32_scalar(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                             const float* c0, const float* c1, const float* v, float* out) {
  for (std::size_t j = 0; j < f; ++j) out[j] = 0.f;
  for (std::size_t k = 0; k < n; ++k) {
    const float* y = row_of(Y, f, idx, k);
    float s = c0 ? c0[k] : 0.f;
    if (c1) s += c1[k] * dot_f32_scalar(y, v, f);
    for (std::size_t j = 0; j < f; ++j) out[j] += s * y[j];
  }
}

void symv_f32_scalar(const float* G, std::size_t f, const float* v, float* out) {
  for (std::size_t i = 0; i < f; ++i) out[i] = 0.f;
  for (std::size_t j = 0; j < f; ++j) {
    const float vj = v[j];
    const float* row = G + j * f;  // row j equals column j
    for (std::size_t i = 0; i < f; ++i) out[i] += vj * row[i];
  }
}

void symv_rows_f32_scalar(const float* G, std::size_t f, const float* const* v, std::size_t m,
                          float* const* out) {
  for (std::size_t b = 0; b < m; ++b) symv_f32_scalar(G, f, v[b], out[b]);
}

void rank_update_f32_scalar(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                            const float* w, float* A) {
  for (std::size_t k = 0; k < n; ++k) {
    const float* y = row_of(Y, f, idx, k);
    const float wk = w ? w[k] : 1.f;
    for (std::size_t i = 0; i < f; ++i) {
      const float a = wk * y[i];
      float* row = A + i * f;
      for (std::size_t j = i; j < f; ++j) row[j] += a * y[j];
    }
  }
}

}  // namespace llmrec::als::detail
