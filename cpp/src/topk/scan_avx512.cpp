// AVX-512 (F, DQ, BW, VL) kernel; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "../simd/f32_avx512.hpp"
#include "scan.hpp"

namespace llmrec::topk::detail {
namespace {

using Isa = llmrec::simd::F32Avx512;

#include "scan_simd.inl"

}  // namespace

void scan_avx512(const ScanJob& job) { scan_dispatch<4, 12, 24>(job); }
void scan_packed_avx512(const PackedScanJob& job) { scan_packed_dispatch<8, 4, 8, 2>(job); }

}  // namespace llmrec::topk::detail
