// fp16 decoding by F16C (vcvtph2ps on 8 halves). This file alone is compiled with
// -mavx2 -mfma -mf16c, and used only where cpuid reports F16C.
#include <immintrin.h>

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {

std::size_t fp16_decode_avx2(const uint16_t* h, std::size_t count, float* out) {
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  return i;
}

}  // namespace llmrec::quant::detail
