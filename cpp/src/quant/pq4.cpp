// pq4: product-quantization codebooks (native k-means per subspace), 4-bit codes packed
// in blocks of 32, per-query uint8 lookup tables, and the fast-scan search through the
// shared top-k driver (flat, gathered allow-lists and partitions).
#include <algorithm>
#include <cstdint>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "search.hpp"
#include "llmrec/kmeans.hpp"
#include "llmrec/quant.hpp"
#include "llmrec/thread_pool.hpp"

namespace llmrec::quant {
namespace detail {

const simd::Variant<Pq4Fn>& pq4_active_scan() {
  static constexpr simd::Variant<Pq4Fn> kVariants[] = {
      {simd::Level::scalar, "scalar", pq4_scan_scalar},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2", pq4_scan_avx2})
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", pq4_scan_avx512})
  };
  return simd::select(kVariants);
}

Pq4CompactFn pq4_active_compact() {
  static constexpr simd::Variant<Pq4CompactFn> kVariants[] = {
      {simd::Level::scalar, "scalar", pq4_compact},
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", pq4_compact_avx512})
  };
  return simd::select(kVariants).kernels;
}

}  // namespace detail

namespace {

using topk::detail::ScanTask;

struct Pq4Tables {
  std::vector<uint8_t> luts;
  std::vector<float> bias, inverse_scale;
};

Pq4Tables make_tables(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks) {
  Pq4Tables t;
  t.luts.assign(nq * 16 * pq4_padded(m), 0);
  t.bias.assign(nq, 0.f);
  t.inverse_scale.assign(nq, 0.f);
  pq4_tables(queries, nq, d, m, codebooks, t.luts.data(), t.bias.data(), t.inverse_scale.data());
  return t;
}

detail::Pq4Job base_job(const Pq4Tables& t, std::size_t padded_m, std::size_t first_query, std::size_t nq,
                        const ScanTask& task) {
  detail::Pq4Job job{};
  job.padded_m = padded_m;
  job.luts = t.luts.data() + first_query * 16 * padded_m;
  job.bias = t.bias.data() + first_query;
  job.inverse_scale = t.inverse_scale.data() + first_query;
  job.nq = nq;
  job.thresholds = task.thresholds;
  job.on_hit = task.on_hit;
  job.context = task.context;
  return job;
}

// Owns the integer reservoirs of one task's queries (see Pq4Reservoirs): with quantized
// scores and re-ranking shortlists, thousands of hits per query pass the running
// threshold, and pushing each into the driver's heap as a float cost more than the scan.
// Hits arrive in ascending slot order within a task and the cut is stable, so the
// survivors reach the driver in that order (equal scores keep their smaller ids). Only
// used without exclusions or an allow mask, which the driver applies on report: a
// filtered item must not raise a floor.
struct ReservoirHits {
  static constexpr std::size_t kFactor = 2;  // capacity 2k; 4k measured slower (cache)
  std::vector<uint16_t> sums;
  std::vector<uint32_t> slots, sizes, floors;
  detail::Pq4Reservoirs view;

  ReservoirHits(std::size_t nq, std::size_t k, const float* thresholds, const float* bias, const float* inverse_scale)
      : sums(nq * kFactor * k), slots(nq * kFactor * k), sizes(nq, 0), floors(nq) {
    for (std::size_t q = 0; q < nq; ++q) floors[q] = detail::pq4_floor(thresholds[q], bias[q], inverse_scale[q]);
    view = {k, kFactor * k, sums.data(), slots.data(), sizes.data(), floors.data(), bias, inverse_scale,
            detail::pq4_active_compact()};
  }

  // Reports the best k of each query to the driver, as floats.
  void flush(const ScanTask& task, int64_t first_id) {
    for (std::size_t q = 0; q < sizes.size(); ++q) {
      view.compact(view, q);  // no-op unless more than k
      const uint16_t* s = sums.data() + q * view.capacity;
      const uint32_t* slot = slots.data() + q * view.capacity;
      for (std::size_t j = 0; j < sizes[q]; ++j) {
        const float score = detail::pq4_score(s[j], view.inverse_scale[q], view.bias[q]);
        if (score > task.thresholds[q]) task.on_hit(task.context, q, first_id + slot[j], score);
      }
    }
  }
};

}  // namespace

void pq4_train(const float* x, std::size_t n, std::size_t d, std::size_t m, std::size_t iterations,
               uint64_t seed, std::size_t num_threads, float* codebooks) {
  if (m == 0 || d % m != 0)
    throw std::invalid_argument("pq_subspaces must divide the dimension " + std::to_string(d) + ", got " +
                                std::to_string(m));
  if (m > 256) throw std::invalid_argument("pq_subspaces must be at most 256");
  if (n < 16) throw std::invalid_argument("pq4 needs at least 16 training vectors, got " + std::to_string(n));
  const std::size_t dsub = d / m;
  std::vector<float> sub(n * dsub);
  for (std::size_t s = 0; s < m; ++s) {
    for (std::size_t r = 0; r < n; ++r)
      std::copy(x + r * d + s * dsub, x + r * d + (s + 1) * dsub, sub.data() + r * dsub);
    kmeans::train(sub.data(), n, dsub, 16, iterations, seed + s, num_threads, codebooks + s * 16 * dsub, nullptr);
  }
}

uint8_t pq4_get_code(const uint8_t* blocks, std::size_t m, std::size_t slot, std::size_t sub) {
  const std::size_t lane = slot % kPq4Block;
  const uint8_t byte = blocks[(slot / kPq4Block) * pq4_block_bytes(m) + sub * 16 + lane % 16];
  return lane < 16 ? byte & 15 : byte >> 4;
}

void pq4_set_code(uint8_t* blocks, std::size_t m, std::size_t slot, std::size_t sub, uint8_t code) {
  const std::size_t lane = slot % kPq4Block;
  uint8_t& byte = blocks[(slot / kPq4Block) * pq4_block_bytes(m) + sub * 16 + lane % 16];
  byte = lane < 16 ? static_cast<uint8_t>((byte & 0xf0) | (code & 15))
                   : static_cast<uint8_t>((byte & 0x0f) | ((code & 15) << 4));
}

void pq4_encode(const float* x, std::size_t n, std::size_t d, std::size_t m, const float* codebooks,
                uint8_t* blocks, std::size_t first_slot, std::size_t num_threads, const int64_t* slots) {
  const std::size_t dsub = d / m, chunk = 1024;
  // Chunks own whole blocks when slots are consecutive; scattered slots are coded serially
  // since two rows may share a byte.
  const std::size_t threads = slots ? 1 : std::max<std::size_t>(1, num_threads);
  const std::size_t lead = slots ? 0 : (kPq4Block - first_slot % kPq4Block) % kPq4Block;
  auto code_row = [&](std::size_t r) {
    const std::size_t slot = slots ? static_cast<std::size_t>(slots[r]) : first_slot + r;
    for (std::size_t s = 0; s < m; ++s) {
      const float* v = x + r * d + s * dsub;
      const float* c = codebooks + s * 16 * dsub;
      float best = std::numeric_limits<float>::infinity();
      uint8_t arg = 0;
      for (std::size_t j = 0; j < 16; ++j) {
        float dist = 0.f;
        for (std::size_t i = 0; i < dsub; ++i) {
          const float diff = v[i] - c[j * dsub + i];
          dist += diff * diff;
        }
        if (dist < best) best = dist, arg = static_cast<uint8_t>(j);
      }
      pq4_set_code(blocks, m, slot, s, arg);
    }
  };
  for (std::size_t r = 0; r < std::min(lead, n); ++r) code_row(r);
  if (n <= lead) return;
  const std::size_t rest = n - lead;
  parallel_for((rest + chunk - 1) / chunk, threads, [&](std::size_t c) {
    for (std::size_t r = lead + c * chunk; r < std::min(n, lead + (c + 1) * chunk); ++r) code_row(r);
  });
}

void pq4_copy_slots(const uint8_t* src, const int64_t* src_slots, uint8_t* dst, const int64_t* dst_slots,
                    std::size_t count, std::size_t m) {
  for (std::size_t j = 0; j < count; ++j)
    for (std::size_t s = 0; s < m; ++s)
      pq4_set_code(dst, m, static_cast<std::size_t>(dst_slots[j]), s,
                   pq4_get_code(src, m, static_cast<std::size_t>(src_slots[j]), s));
}

void pq4_decode(const uint8_t* blocks, std::size_t first, std::size_t n, std::size_t d, std::size_t m,
                const float* codebooks, float* out) {
  const std::size_t dsub = d / m;
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t s = 0; s < m; ++s) {
      const uint8_t c = pq4_get_code(blocks, m, first + r, s);
      std::copy(codebooks + (s * 16 + c) * dsub, codebooks + (s * 16 + c + 1) * dsub, out + r * d + s * dsub);
    }
}

namespace detail {

void pq4_tables_scalar(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks,
                       uint8_t* luts, float* bias, float* inverse_scale) {
  const std::size_t dsub = d / m, padded = pq4_padded(m);
  std::vector<float> table(m * 16);
  for (std::size_t q = 0; q < nq; ++q) {
    const float* v = queries + q * d;
    float widest = 0.f;
    double base = 0.0;
    for (std::size_t s = 0; s < m; ++s) {
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      float* dots = table.data() + s * 16;
      // The 16 centroids side by side (vectorized), each dot summed in dimension order.
      std::fill(dots, dots + 16, 0.f);
      for (std::size_t i = 0; i < dsub; ++i) {
        const float vi = v[s * dsub + i];
        const float* c0 = codebooks + s * 16 * dsub + i;
        for (std::size_t c = 0; c < 16; ++c) dots[c] += vi * c0[c * dsub];
      }
      for (std::size_t c = 0; c < 16; ++c) {
        lo = std::min(lo, dots[c]);
        hi = std::max(hi, dots[c]);
      }
      for (std::size_t c = 0; c < 16; ++c) table[s * 16 + c] -= lo;
      base += lo;
      widest = std::max(widest, hi - lo);
    }
    const float scale = widest > 0.f ? 255.f / widest : 1.f;
    uint8_t* lut = luts + q * padded * 16;
    std::fill(lut, lut + padded * 16, uint8_t{0});
    // Round to nearest, ties to even, as std::nearbyint (a library call on the baseline
    // CPU): adding and removing 1.5 * 2^23 leaves the rounded value of any 0 <= x < 2^22.
    constexpr float kRound = 12582912.f;
    for (std::size_t e = 0; e < m * 16; ++e) {
      // >= 0: minus the subspace's minimum. Clamped to [0, 255] before the conversion, NaN
      // (from dots that overflowed) to 255 as the AVX-512 min does: converting NaN is UB.
      const float product = table[e] * scale;
      const float top = product < 255.f ? product : 255.f;
      const float x = top > 0.f ? top : 0.f;
      lut[e] = static_cast<uint8_t>(static_cast<int>((x + kRound) - kRound));
    }
    bias[q] = static_cast<float>(base);
    inverse_scale[q] = 1.f / scale;
  }
}

}  // namespace detail

void pq4_tables(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks,
                uint8_t* luts, float* bias, float* inverse_scale) {
  using TablesFn = decltype(&detail::pq4_tables_scalar);
  static constexpr simd::Variant<TablesFn> kVariants[] = {
      {simd::Level::scalar, "scalar", detail::pq4_tables_scalar},
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", detail::pq4_tables_avx512})
  };
  simd::select(kVariants).kernels(queries, nq, d, m, codebooks, luts, bias, inverse_scale);
}

const char* pq4_kernel_name() { return detail::pq4_active_scan().name; }

namespace detail {

void pq4_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores,
                bool sorted_rows) {
  const std::size_t d = index.d, m = index.pq4_m, padded = pq4_padded(m), block_bytes = pq4_block_bytes(m);
  const Pq4Tables tables = make_tables(queries, nq, d, m, index.pq4_codebooks);
  const Pq4Fn kernel = pq4_active_scan().kernels;
  const bool filtered = filter.exclude_indptr || filter.allow_mask || filter.allow_ids || filter.deleted;
  // Filters are applied per hit by the driver's sink, and a filtered item must not raise a
  // reservoir's floor: filtered searches keep the heap.
  if (index.partitions > 0 && !filtered && index.slots <= UINT32_MAX) {
    pq4_search_lists(index, queries, tables.luts.data(), tables.bias.data(), tables.inverse_scale.data(), nq, k,
                     threads, sorted_rows, out_ids, out_scores);
    return;
  }
  auto options = topk::detail::drive_options(index.n, nq, k, threads, 16 * padded);
  if (index.partitions > 0) {
    probe_lists(index, queries, nq, k, filter, threads, out_ids, out_scores,
                [&](std::size_t q, const ProbedList& list, const ScanTask& sink) {
      Pq4Job job = base_job(tables, padded, q, 1, sink);
      job.blocks = index.pq4_blocks + (list.start / kPq4Block) * block_bytes;
      job.n_items = list.size;
      job.n_blocks = pq4_blocks(list.size);
      job.ids = index.slot_ids + list.start;
      kernel(job);
    });
    return;
  }
  options.split_align = kPq4Block;
  // Many queries are spread over the threads by query blocks alone, so each query has one
  // heap (and one hit buffer) rather than one per item range.
  options.min_items_per_split = nq >= 2 * threads ? std::max<std::size_t>(index.n, 1) : 16384;
  // An allow-list applied as a mask (dense allow ids) or removed rows filter per hit too.
  const bool buffered = k >= 32 && !filter.exclude_indptr && !filter.allow_mask && !filter.allow_ids &&
                        !filter.deleted;
  // Each item range starts its own reservoir at -inf, so it admits about k (1 + ln(range / k))
  // hits: with long shortlists, one range per thread instead of several.
  if (buffered) options.min_items_per_split = std::max(options.min_items_per_split, index.n / threads);
  topk::detail::drive(filter, options, [&](const ScanTask& task) {
    Pq4Job job = base_job(tables, padded, task.first_query, task.nq, task);
    if (!task.positions) {
      job.blocks = index.pq4_blocks + (task.begin / kPq4Block) * block_bytes;
      job.n_items = task.end - task.begin;
      job.n_blocks = pq4_blocks(job.n_items);
      job.first_id = static_cast<int64_t>(task.begin);
      if (buffered && job.n_items > 2 * k && job.n_items <= UINT32_MAX) {
        ReservoirHits hits(task.nq, k, task.thresholds, job.bias, job.inverse_scale);
        job.reservoirs = &hits.view;
        kernel(job);
        hits.flush(task, job.first_id);
        return;
      }
      kernel(job);
      return;
    }
    // A sparse allow-list: gather the allowed items' codes into blocks first.
    const std::size_t chunk_blocks = 64, chunk = chunk_blocks * kPq4Block;
    std::vector<uint8_t> gathered(chunk_blocks * block_bytes);
    for (std::size_t p0 = task.begin; p0 < task.end; p0 += chunk) {
      const std::size_t count = std::min(chunk, task.end - p0);
      std::fill(gathered.begin(), gathered.end(), uint8_t{0});
      for (std::size_t j = 0; j < count; ++j) {
        const std::size_t id = static_cast<std::size_t>(task.positions[p0 + j]);
        for (std::size_t s = 0; s < m; ++s) pq4_set_code(gathered.data(), m, j, s, pq4_get_code(index.pq4_blocks, m, id, s));
      }
      job.blocks = gathered.data();
      job.n_items = count;
      job.n_blocks = pq4_blocks(count);
      job.ids = task.positions + p0;
      kernel(job);
    }
  }, out_ids, out_scores);
}

}  // namespace detail
}  // namespace llmrec::quant
