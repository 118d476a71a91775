#include "../simd/select.hpp"
#include "scan.hpp"

namespace llmrec::topk::detail {

ScanFn active_scan() {
  static constexpr simd::Variant<ScanFn> kVariants[] = {
      {simd::Level::scalar, "scalar", scan_scalar},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2", scan_avx2})
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", scan_avx512})
  };
  return simd::select(kVariants).kernels;
}

PackedScanFn active_packed_scan() {
  static constexpr simd::Variant<PackedScanFn> kVariants[] = {
      {simd::Level::scalar, "scalar", scan_packed_scalar},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2", scan_packed_avx2})
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", scan_packed_avx512})
  };
  return simd::select(kVariants).kernels;
}

}  // namespace llmrec::topk::detail
