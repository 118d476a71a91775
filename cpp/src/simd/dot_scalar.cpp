// Baseline float dot-product kernels (plain C++ for the generic target) and the dispatch
// between levels.
#include "dot.hpp"

#include "select.hpp"

namespace llmrec::simd {

float dot_f32_scalar(const float* a, const float* b, std::size_t n) {
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += a[i + l] * b[i + l];
  float s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_i8f32_scalar(const int8_t* a, const float* q, std::size_t n) {
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += static_cast<float>(a[i + l]) * q[i + l];
  float s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; i < n; ++i) s += static_cast<float>(a[i]) * q[i];
  return s;
}

void max_dot_f32_scalar(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best) {
  for (std::size_t r = 0; r < m; ++r) {
    const float s = dot_f32_scalar(rows + r * d, v, d);
    if (s > best[r]) best[r] = s;
  }
}

DotKernels dot_kernels() {
  static constexpr Variant<DotKernels> kVariants[] = {
      {Level::scalar, "scalar", {dot_f32_scalar, max_dot_f32_scalar, dot_i8f32_scalar}},
      LLMREC_IF_AVX2({Level::avx2, "avx2", {dot_f32_avx2, max_dot_f32_avx2, dot_i8f32_avx2}})
      LLMREC_IF_AVX512({Level::avx512, "avx512", {dot_f32_avx512, max_dot_f32_avx512, dot_i8f32_avx512}})
  };
  return select(kVariants).kernels;
}

}  // namespace llmrec::simd
