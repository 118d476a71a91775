// AVX2 + FMA kernel; this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "../simd/f32_avx2.hpp"
#include "scan.hpp"

namespace llmrec::topk::detail {
namespace {

using Isa = llmrec::simd::F32Avx2;

#include "scan_simd.inl"

}  // namespace

void scan_avx2(const ScanJob& job) { scan_dispatch<3, 6, 12>(job); }
void scan_packed_avx2(const PackedScanJob& job) { scan_packed_dispatch<4, 2, 6, 1>(job); }

}  // namespace llmrec::topk::detail
