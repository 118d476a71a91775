#include "../simd/select.hpp"
#include "scan.hpp"

namespace llmrec::topk::detail {

namespace {

struct ScanKernels {
  ScanFn rows;
  PackedScanFn packed;
};

const ScanKernels& active_kernels() {
  static constexpr simd::Variant<ScanKernels> kVariants[] = {
      {simd::Level::scalar, "scalar", {scan_scalar, scan_packed_scalar}},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2", {scan_avx2, scan_packed_avx2}})
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", {scan_avx512, scan_packed_avx512}})
  };
  return simd::select(kVariants).kernels;
}

}  // namespace

ScanFn active_scan() { return active_kernels().rows; }
PackedScanFn active_packed_scan() { return active_kernels().packed; }

}  // namespace llmrec::topk::detail
