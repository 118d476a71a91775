#include "llmrec/simd.hpp"
#include "scan.hpp"

namespace llmrec::topk::detail {

ScanFn active_scan() {
  switch (simd::active_level()) {
#ifdef LLMREC_HAVE_AVX512
    case simd::Level::avx512: return scan_avx512;
#endif
#ifdef LLMREC_HAVE_AVX2
    case simd::Level::avx2: return scan_avx2;
#endif
    default: return scan_scalar;
  }
}

}  // namespace llmrec::topk::detail
