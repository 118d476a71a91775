// Baseline kernel: plain C++ compiled for the generic target (SSE2 on x86-64).
#include "scan.hpp"

#include "../simd/dot.hpp"

namespace llmrec::topk::detail {

void scan_scalar(const ScanJob& job) {
  const std::size_t d = job.d;
  for (std::size_t p = job.begin; p < job.end; ++p) {
    const int64_t item = job.positions ? job.positions[p] : static_cast<int64_t>(p);
    const float* x = job.items + static_cast<std::size_t>(item) * d;
    for (std::size_t q = 0; q < job.nq; ++q) {
      const float s = simd::dot_f32_scalar(job.queries + q * d, x, d);
      if (s > job.thresholds[q]) job.on_hit(job.context, q, item, s);
    }
  }
}

void scan_packed_scalar(const PackedScanJob& job) {
  constexpr std::size_t G = PackedScanJob::kGroup;
  const std::size_t d = job.d;
  for (std::size_t first = job.begin; first < job.end; first += G) {
    const float* group = job.packed + first / G * d * G;
    const std::size_t count = job.end - first < G ? job.end - first : G;
    for (std::size_t q = 0; q < job.nq; ++q) {
      const float* v = job.queries + q * d;
      float acc[G] = {};
      for (std::size_t i = 0; i < d; ++i)
        for (std::size_t l = 0; l < G; ++l) acc[l] += v[i] * group[i * G + l];
      for (std::size_t l = 0; l < count; ++l)
        if (acc[l] > job.thresholds[q]) job.on_hit(job.context, q, static_cast<int64_t>(first + l), acc[l]);
    }
  }
}

}  // namespace llmrec::topk::detail
