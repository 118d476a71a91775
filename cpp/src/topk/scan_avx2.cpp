// AVX2 + FMA kernel; this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "scan.hpp"

namespace llmrec::topk::detail {
namespace {

struct Isa {
  using V = __m256;
  static constexpr std::size_t W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_first(const float* p, std::size_t n) {
    alignas(32) static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                            0,  0,  0,  0,  0,  0,  0,  0};
    const __m256i mask = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(ones_then_zeros + 8 - n));
    return _mm256_maskload_ps(p, mask);
  }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static unsigned greater(V a, V b) {
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)));
  }
  static __m128 sum4(V a, V b, V c, V d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
};

#include "scan_simd.inl"

}  // namespace

void scan_avx2(const ScanJob& job) { scan_dispatch<3, 6, 12>(job); }

}  // namespace llmrec::topk::detail
