// AVX2 sq8 kernel: byte multiply-add (vpmaddubsw on |t| and sign-adjusted codes, so pairs
// never saturate: 2 * 127 * 127 < 2^15). Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

struct Isa {
  static constexpr std::size_t W = 8;
  using V = __m256i;
  using C = __m256i;
  struct Q {
    __m256i t, a;
  };
  static V zero() { return _mm256_setzero_si256(); }
  static V load(const int32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static void store(int32_t* p, V v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
  static C prep(const uint8_t* p) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static Q query(const int8_t* t, const uint8_t* a) {
    int32_t t4, a4;
    __builtin_memcpy(&t4, t, 4);
    __builtin_memcpy(&a4, a, 4);
    return {_mm256_set1_epi32(t4), _mm256_set1_epi32(a4)};
  }
  static V dot(V acc, C c, const Q& q) {
    const __m256i pairs = _mm256_maddubs_epi16(q.a, _mm256_sign_epi8(c, q.t));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static V finish(V acc, int32_t) { return acc; }
  static unsigned above(V acc, float scale, float offset, const float* item_scale, const uint16_t* item_base,
                        const float* base_row, float threshold, float* scores) {
    __m256 sc = _mm256_set1_ps(scale), off = _mm256_set1_ps(offset);
    if (item_scale) sc = _mm256_mul_ps(sc, _mm256_loadu_ps(item_scale));
    if (item_base) {
      const __m256i at = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(item_base)));
      off = _mm256_add_ps(off, _mm256_i32gather_ps(base_row, at, 4));
    }
    const __m256 s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), sc, off);
    const unsigned bits = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(s, _mm256_set1_ps(threshold), _CMP_GT_OQ)));
    if (bits) _mm256_store_ps(scores, s);
    return bits;
  }
};

#include "sq8_scan_simd.inl"

}  // namespace

void sq8_scan_avx2(const Sq8Job& job) { sq8_scan_dispatch<4, 1, 2>(job); }

}  // namespace llmrec::quant::detail
