// Baseline kernel: plain C++ compiled for the generic target (SSE2 on x86-64).
#include "scan.hpp"

namespace llmrec::topk::detail {

void scan_scalar(const ScanJob& job) {
  const std::size_t d = job.d;
  for (std::size_t p = job.begin; p < job.end; ++p) {
    const int64_t item = job.positions ? job.positions[p] : static_cast<int64_t>(p);
    const float* x = job.items + static_cast<std::size_t>(item) * d;
    for (std::size_t q = 0; q < job.nq; ++q) {
      const float* v = job.queries + q * d;
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      std::size_t i = 0;
      for (; i + 4 <= d; i += 4)
        for (int l = 0; l < 4; ++l) acc[l] += v[i + l] * x[i + l];
      float s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      for (; i < d; ++i) s += v[i] * x[i];
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
