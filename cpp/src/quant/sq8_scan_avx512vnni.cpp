// AVX-512 VNNI sq8 kernel: vpdpbusd multiplies the unsigned code bytes (s + 128) by the
// signed query bytes and adds groups of four into int32 lanes in one instruction; the
// 128 * sum(t) bias is removed per query. Compiled with the AVX-512 flags plus
// -mavx512vnni, and used only when cpuid reports VNNI.
#include <immintrin.h>

// GCC 12's own intrinsic wrappers start from _mm512_undefined_*() and then warn that
// the value "may be used uninitialized" (a false positive in the compiler's headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

struct Isa {
  static constexpr std::size_t W = 16;
  using V = __m512i;
  using C = __m512i;
  using Q = __m512i;
  static V zero() { return _mm512_setzero_si512(); }
  static V load(const int32_t* p) { return _mm512_load_si512(p); }
  static void store(int32_t* p, V v) { _mm512_store_si512(p, v); }
  static C prep(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static Q query(const int8_t* t, const uint8_t*) {
    int32_t t4;
    __builtin_memcpy(&t4, t, 4);
    return _mm512_set1_epi32(t4);
  }
  static V dot(V acc, C c, Q q) { return _mm512_dpbusd_epi32(acc, c, q); }
  static V finish(V acc, int32_t qsum) { return _mm512_sub_epi32(acc, _mm512_set1_epi32(128 * qsum)); }
  static unsigned above(V acc, float scale, float offset, const float* item_scale, const uint16_t* item_base,
                        const float* base_row, float threshold, float* scores) {
    __m512 sc = _mm512_set1_ps(scale), off = _mm512_set1_ps(offset);
    if (item_scale) sc = _mm512_mul_ps(sc, _mm512_loadu_ps(item_scale));
    if (item_base) {
      const __m512i at = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(item_base)));
      off = _mm512_add_ps(off, _mm512_i32gather_ps(at, base_row, 4));
    }
    const __m512 s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), sc, off);
    const unsigned bits = _mm512_cmp_ps_mask(s, _mm512_set1_ps(threshold), _CMP_GT_OQ);
    if (bits) _mm512_store_ps(scores, s);
    return bits;
  }
};

#include "sq8_scan_simd.inl"

}  // namespace

void sq8_scan_avx512vnni(const Sq8Job& job) { sq8_scan_dispatch<8, 2, 4>(job); }

}  // namespace llmrec::quant::detail
