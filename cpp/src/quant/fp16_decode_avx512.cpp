// AVX-512 fp16 decoding (vcvtph2ps on 16 halves). sq8 uses the VNNI kernel where the
// CPU has it and the AVX2 kernel otherwise.
#include <immintrin.h>

// GCC 12's own intrinsic wrappers start from _mm512_undefined_*() and then warn that
// the value "may be used uninitialized" (a false positive in the compiler's headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {

std::size_t fp16_decode_avx512(const uint16_t* h, std::size_t count, float* out) {
  std::size_t i = 0;
  for (; i + 16 <= count; i += 16)
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i))));
  return i;
}

}  // namespace llmrec::quant::detail
