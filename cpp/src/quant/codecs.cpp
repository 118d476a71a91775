// sq8 and fp16: training, encoding, decoding, query preparation, and search through the
// shared top-k driver, plus exact re-ranking through topk::search.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "../topk/scan.hpp"
#include "search.hpp"
#include "llmrec/quant.hpp"
#include "llmrec/thread_pool.hpp"


namespace llmrec::quant {
namespace {

using topk::detail::ScanTask;

const simd::Variant<detail::Sq8Fn>& active_sq8() {
  static constexpr simd::Variant<detail::Sq8Fn> kVariants[] = {
      {simd::Level::scalar, "scalar", detail::sq8_scan_scalar},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2", detail::sq8_scan_avx2})
      LLMREC_IF_AVX512VNNI({simd::Level::avx512, "avx512vnni", detail::sq8_scan_avx512vnni, simd::Feature::vnni})
  };
  return simd::select(kVariants);
}

uint16_t half_from_float(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u, bits = x & 0x7fffffffu;
  if (bits >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (bits > 0x7f800000u ? 0x200u : 0u));
  if (bits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (bits < 0x38800000u) {  // below the smallest normal half: a multiple of 2^-24
    float magnitude;
    std::memcpy(&magnitude, &bits, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(magnitude * 16777216.0f)));
  }
  uint32_t h = ((((bits >> 23) - 112u) << 10) | ((bits & 0x7fffffu) >> 13));
  const uint32_t rest = bits & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry rolls into the exponent
  return static_cast<uint16_t>(sign | h);
}

float float_from_half(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu,
                 mantissa = h & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
    return sign ? -magnitude : magnitude;
  }
  const uint32_t bits = sign | (exponent == 31 ? 0x7f800000u | (mantissa << 13)
                                               : ((exponent + 112u) << 23) | (mantissa << 13));
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

void fp16_decode_active(const uint16_t* h, std::size_t count, float* out) {
  // Each SIMD kernel converts whole vectors and returns how many halves it did.
  using DecodeFn = std::size_t (*)(const uint16_t*, std::size_t, float*);
  static constexpr simd::Variant<DecodeFn> kVariants[] = {
      {simd::Level::scalar, "scalar", nullptr},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2", detail::fp16_decode_avx2, simd::Feature::f16c})
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512", detail::fp16_decode_avx512})
  };
  const DecodeFn kernel = simd::select(kVariants).kernels;
  const std::size_t done = kernel ? kernel(h, count, out) : 0;
  for (std::size_t i = done; i < count; ++i) out[i] = float_from_half(h[i]);
}

// Queries prepared for the sq8 kernels: q . x ~= qoffset + qscale * sum(s * t) where
// t = round(q * step / qscale) uses the whole int8 range.
struct Sq8Queries {
  std::vector<int8_t> codes;
  std::vector<uint8_t> abs;
  std::vector<int32_t> sums;
  std::vector<float> scale, offset;
};

// The int8 level of a value already divided by its step: nearest, ties to even, within
// [-127, 127]. Clamped before the conversion, NaN to 0: converting a float outside int's
// range (NaN included) is undefined behaviour, and on x86 yields INT_MIN, a garbage code.
inline int sq8_level(double z) {
  if (!(z == z)) return 0;
  return static_cast<int>(std::nearbyint(std::clamp(z, -127.0, 127.0)));
}

Sq8Queries prepare_sq8_queries(const float* queries, std::size_t nq, std::size_t d,
                               const float* mid, const float* step) {
  const std::size_t stride = 4 * sq8_groups(d);
  Sq8Queries p;
  p.codes.assign(nq * stride, 0);
  p.abs.assign(nq * stride, 0);
  p.sums.assign(nq, 0);
  p.scale.assign(nq, 0.f);
  p.offset.assign(nq, 0.f);
  std::vector<float> w(d);
  for (std::size_t q = 0; q < nq; ++q) {
    const float* v = queries + q * d;
    double offset = 0.0;
    float largest = 0.f;
    for (std::size_t i = 0; i < d; ++i) {
      offset += static_cast<double>(v[i]) * mid[i];
      w[i] = v[i] * step[i];
      largest = std::max(largest, std::fabs(w[i]));
    }
    p.offset[q] = static_cast<float>(offset);
    if (largest == 0.f) continue;
    const float scale = largest / 127.f, inverse = 127.f / largest;
    p.scale[q] = scale;
    // float32 as the tests' model; where w overflowed or its largest entry is so small
    // that 127 / largest does not fit a float, the levels come from double arithmetic.
    const bool in_float = std::isfinite(largest) && std::isfinite(inverse);
    double wide_inverse = 0.0;
    if (!in_float) {
      double wide_largest = 0.0;
      for (std::size_t i = 0; i < d; ++i)
        wide_largest = std::max(wide_largest, std::fabs(static_cast<double>(v[i]) * step[i]));
      wide_inverse = wide_largest > 0.0 ? 127.0 / wide_largest : 0.0;
      p.scale[q] = static_cast<float>(wide_largest / 127.0);
    }
    int32_t sum = 0;
    for (std::size_t i = 0; i < d; ++i) {
      const int t = in_float ? sq8_level(w[i] * inverse) : sq8_level(static_cast<double>(v[i]) * step[i] * wide_inverse);
      p.codes[q * stride + i] = static_cast<int8_t>(t);
      p.abs[q * stride + i] = static_cast<uint8_t>(t < 0 ? -t : t);
      sum += t;
    }
    p.sums[q] = sum;
  }
  return p;
}

// q . b for every query and residual base, row-major (nq x n_bases).
std::vector<float> base_scores(const float* queries, std::size_t nq, std::size_t d, const float* bases,
                               std::size_t n_bases, std::size_t threads) {
  std::vector<float> out(nq * n_bases);
  const std::size_t per_task = 4;
  parallel_for((nq + per_task - 1) / per_task, std::min(threads, (nq + per_task - 1) / per_task),
               [&](std::size_t t) {
    for (std::size_t q = t * per_task; q < std::min(nq, (t + 1) * per_task); ++q) {
      const float* v = queries + q * d;
      for (std::size_t b = 0; b < n_bases; ++b) {
        const float* row = bases + b * d;
        float partial[8] = {};
        std::size_t i = 0;
        for (; i + 8 <= d; i += 8)
          for (std::size_t j = 0; j < 8; ++j) partial[j] += v[i + j] * row[i + j];
        float tail = 0.f;
        for (; i < d; ++i) tail += v[i] * row[i];
        out[q * n_bases + b] = ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
                               ((partial[2] + partial[6]) + (partial[3] + partial[7])) + tail;
      }
    }
  });
  return out;
}

void sq8_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores) {
  const std::size_t d = index.d, groups = sq8_groups(d), block_bytes = sq8_block_bytes(d);
  const Sq8Queries prepared = prepare_sq8_queries(queries, nq, d, index.sq8_mid, index.sq8_step);
  const bool with_bases = index.sq8_item_bases && index.sq8_bases && index.sq8_n_bases > 0;
  const std::vector<float> bscores =
      with_bases ? base_scores(queries, nq, d, index.sq8_bases, index.sq8_n_bases, threads) : std::vector<float>();
  const detail::Sq8Fn kernel = active_sq8().kernels;
  auto options = topk::detail::drive_options(index.n, nq, k, threads, 4 * groups);
  options.split_align = kSq8Block;
  options.min_items_per_split = 8192;
  topk::detail::drive(filter, options, [&](const ScanTask& task) {
    detail::Sq8Job job{};
    job.groups = groups;
    job.qcodes = prepared.codes.data() + task.first_query * 4 * groups;
    job.qabs = prepared.abs.data() + task.first_query * 4 * groups;
    job.qsums = prepared.sums.data() + task.first_query;
    job.qscale = prepared.scale.data() + task.first_query;
    job.qoffset = prepared.offset.data() + task.first_query;
    job.nq = task.nq;
    job.thresholds = task.thresholds;
    job.on_hit = task.on_hit;
    job.context = task.context;
    if (with_bases) {
      job.base_scores = bscores.data() + task.first_query * index.sq8_n_bases;
      job.base_stride = index.sq8_n_bases;
    }
    if (!task.positions) {
      job.blocks = index.sq8_blocks + (task.begin / kSq8Block) * block_bytes;
      job.n_items = task.end - task.begin;
      job.n_blocks = sq8_blocks(job.n_items);
      job.first_id = static_cast<int64_t>(task.begin);
      if (index.sq8_item_scales) job.item_scale = index.sq8_item_scales + task.begin;
      if (with_bases) job.item_base = index.sq8_item_bases + task.begin;
      kernel(job);
      return;
    }
    // A sparse allow-list: gather the allowed items' codes (and per-item factors) into blocks first.
    const std::size_t chunk_blocks = 64, chunk = chunk_blocks * kSq8Block;
    std::vector<uint8_t> gathered(chunk_blocks * block_bytes, 0x80);
    std::vector<float> scales(index.sq8_item_scales ? chunk : 0, 0.f);
    std::vector<uint16_t> bases(with_bases ? chunk : 0, 0);
    if (index.sq8_item_scales) job.item_scale = scales.data();
    if (with_bases) job.item_base = bases.data();
    for (std::size_t p0 = task.begin; p0 < task.end; p0 += chunk) {
      const std::size_t count = std::min(chunk, task.end - p0);
      for (std::size_t j = 0; j < count; ++j) {
        const std::size_t id = static_cast<std::size_t>(task.positions[p0 + j]);
        const uint8_t* src = index.sq8_blocks + (id / kSq8Block) * block_bytes + (id % kSq8Block) * 4;
        uint8_t* dst = gathered.data() + (j / kSq8Block) * block_bytes + (j % kSq8Block) * 4;
        for (std::size_t g = 0; g < groups; ++g) std::memcpy(dst + g * 64, src + g * 64, 4);
        if (index.sq8_item_scales) scales[j] = index.sq8_item_scales[id];
        if (with_bases) bases[j] = index.sq8_item_bases[id];
      }
      job.blocks = gathered.data();
      job.n_items = count;
      job.n_blocks = sq8_blocks(count);
      job.ids = task.positions + p0;
      kernel(job);
    }
  }, out_ids, out_scores);
}

// Forwards hits from a kernel run on decoded rows, mapping row numbers to item ids.
struct RowHits {
  topk::detail::HitFn on_hit;
  void* context;
  const int64_t* ids;  // item id of each decoded row, or null: first_id + row
  int64_t first_id;
  static void forward(void* self, std::size_t query, int64_t row, float score) {
    const auto& h = *static_cast<RowHits*>(self);
    h.on_hit(h.context, query, h.ids ? h.ids[row] : h.first_id + row, score);
  }
};

void fp16_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                 const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores) {
  const std::size_t d = index.d;
  const topk::detail::ScanFn scan = topk::detail::active_scan();
  // Rows are decoded a chunk at a time into L2 and scored there by the exact kernel.
  const std::size_t rows = std::max<std::size_t>(16, (64 * 1024) / (d * sizeof(float)));
  topk::detail::drive(filter, topk::detail::drive_options(index.n, nq, k, threads, d * sizeof(float)),
                      [&](const ScanTask& task) {
    std::vector<float> decoded(rows * d);
    std::vector<float> scratch(topk::detail::scratch_floats(task.nq, d));
    for (std::size_t p0 = task.begin; p0 < task.end; p0 += rows) {
      const std::size_t count = std::min(rows, task.end - p0);
      if (task.positions) {
        for (std::size_t j = 0; j < count; ++j)
          fp16_decode_active(index.fp16_rows + static_cast<std::size_t>(task.positions[p0 + j]) * d, d,
                             decoded.data() + j * d);
      } else {
        fp16_decode_active(index.fp16_rows + p0 * d, count * d, decoded.data());
      }
      RowHits hits{task.on_hit, task.context, task.positions ? task.positions + p0 : nullptr,
                   static_cast<int64_t>(p0)};
      topk::detail::ScanJob job{queries + task.first_query * d, task.nq, d, decoded.data(), nullptr,
                                0, count, task.thresholds, &RowHits::forward, &hits, scratch.data()};
      scan(job);
    }
  }, out_ids, out_scores);
}

// Partitioned search (sq8 and fp16; pq4 in pq4.cpp), each probed list scanned by the codec
// kernel into the query's heap through detail::probe_lists.
void partitioned_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                        const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores) {
  const std::size_t d = index.d;
  if (index.codec == Codec::sq8) {
    const std::size_t groups = sq8_groups(d), block_bytes = sq8_block_bytes(d);
    const Sq8Queries prepared = prepare_sq8_queries(queries, nq, d, index.sq8_mid, index.sq8_step);
    const detail::Sq8Fn kernel = active_sq8().kernels;
    // Residual codes are relative to their list's centroid: q . c is the probe's score.
    const bool residual = index.sq8_item_scales != nullptr;
    detail::probe_lists(index, queries, nq, k, filter, threads, out_ids, out_scores,
                        [&](std::size_t q, const detail::ProbedList& list, const ScanTask& sink) {
      const float offset = residual ? prepared.offset[q] + list.score : prepared.offset[q];
      detail::Sq8Job job{};
      job.groups = groups;
      job.qcodes = prepared.codes.data() + q * 4 * groups;
      job.qabs = prepared.abs.data() + q * 4 * groups;
      job.qsums = prepared.sums.data() + q;
      job.qscale = prepared.scale.data() + q;
      job.qoffset = &offset;
      job.nq = 1;
      job.thresholds = sink.thresholds;
      job.on_hit = sink.on_hit;
      job.context = sink.context;
      job.blocks = index.sq8_blocks + (list.start / kSq8Block) * block_bytes;
      job.n_items = list.size;
      job.n_blocks = sq8_blocks(list.size);
      job.ids = index.slot_ids + list.start;
      if (residual) job.item_scale = index.sq8_item_scales + list.start;
      kernel(job);
    });
    return;
  }
  const topk::detail::ScanFn scan = topk::detail::active_scan();
  const std::size_t rows = std::max<std::size_t>(16, (64 * 1024) / (d * sizeof(float)));
  detail::probe_lists(index, queries, nq, k, filter, threads, out_ids, out_scores,
                      [&](std::size_t q, const detail::ProbedList& list, const ScanTask& sink) {
    thread_local std::vector<float> decoded, scratch;
    decoded.resize(rows * d);
    scratch.resize(topk::detail::scratch_floats(1, d));
    for (std::size_t r0 = 0; r0 < list.size; r0 += rows) {
      const std::size_t count = std::min(rows, list.size - r0);
      fp16_decode_active(index.fp16_rows + (list.start + r0) * d, count * d, decoded.data());
      RowHits hits{sink.on_hit, sink.context, index.slot_ids + list.start + r0, 0};
      topk::detail::ScanJob job{queries + q * d, 1, d, decoded.data(), nullptr, 0, count,
                                sink.thresholds, &RowHits::forward, &hits, scratch.data()};
      scan(job);
    }
  });
}

}  // namespace

ListRanking::ListRanking(const float* centroids, const int64_t* list_sizes, std::size_t partitions,
                         std::size_t d) {
  std::vector<float> rows;
  for (std::size_t p = 0; p < partitions; ++p) {
    if (list_sizes[p] == 0) continue;
    lists.push_back(static_cast<int64_t>(p));
    rows.insert(rows.end(), centroids + p * d, centroids + (p + 1) * d);
  }
  this->centroids = topk::PackedItems(rows.data(), lists.size(), d);
}

namespace detail {

void rank_lists(const IndexView& index, const float* queries, std::size_t nq, std::size_t threads,
                int64_t* probe_ids, float* probe_scores) {
  const ListRanking& ranking = *index.ranking;
  const std::size_t probes = std::min(index.probes, index.partitions);
  topk::search_packed(ranking.centroids, queries, nq, probes, topk::Filter{}, threads, probe_ids, probe_scores);
  for (std::size_t j = 0; j < nq * probes; ++j)
    if (probe_ids[j] >= 0) probe_ids[j] = ranking.lists[static_cast<std::size_t>(probe_ids[j])];
}

void probe_lists(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                 const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores,
                 const std::function<void(std::size_t, const ProbedList&, const ScanTask&)>& scan_list) {
  const std::size_t d = index.d, probes = std::min(index.probes, index.partitions);
  std::vector<int64_t> probe_ids(nq * probes);
  std::vector<float> probe_scores(nq * probes);
  rank_lists(index, queries, nq, threads, probe_ids.data(), probe_scores.data());
  topk::detail::drive_per_query(filter, topk::detail::drive_options(index.n, nq, k, threads, d * sizeof(float)), [&](std::size_t q, const ScanTask& sink) {
    for (std::size_t j = 0; j < probes; ++j) {
      const int64_t p = probe_ids[q * probes + j];
      if (p < 0 || index.list_sizes[p] == 0) continue;
      const ProbedList list{static_cast<std::size_t>(p), static_cast<std::size_t>(index.list_starts[p]),
                            static_cast<std::size_t>(index.list_sizes[p]), probe_scores[q * probes + j]};
      scan_list(q, list, sink);
    }
  }, out_ids, out_scores);
}

}  // namespace detail

namespace {

void codec_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                  const topk::Filter& filter, std::size_t threads, int64_t* ids, float* scores,
                  bool sorted_rows = true) {
  if (index.codec == Codec::pq4) {
    detail::pq4_search(index, queries, nq, k, filter, threads, ids, scores, sorted_rows);
    return;
  }
  if (index.partitions > 0) {
    partitioned_search(index, queries, nq, k, filter, threads, ids, scores);
    return;
  }
  switch (index.codec) {
    case Codec::sq8: sq8_search(index, queries, nq, k, filter, threads, ids, scores); return;
    case Codec::fp16: fp16_search(index, queries, nq, k, filter, threads, ids, scores); return;
    case Codec::pq4: break;
  }
  throw std::invalid_argument("unknown codec");
}

}  // namespace

void sq8_train(const float* x, std::size_t n, std::size_t d, float* mid, float* step) {
  if (n == 0) throw std::invalid_argument("sq8 needs at least one training vector");
  std::vector<float> lo(x, x + d), hi(x, x + d);
  for (std::size_t r = 1; r < n; ++r)
    for (std::size_t i = 0; i < d; ++i) {
      lo[i] = std::min(lo[i], x[r * d + i]);
      hi[i] = std::max(hi[i], x[r * d + i]);
    }
  // In double: hi - lo of finite floats may exceed the float range. A step too small for
  // 1 / step to be a finite float (a range below ~3e-36) is raised to the smallest normal
  // float, which still spans the range in 254 levels.
  for (std::size_t i = 0; i < d; ++i) {
    const double range = static_cast<double>(hi[i]) - lo[i];
    mid[i] = static_cast<float>(lo[i] + range * 0.5);
    const float s = static_cast<float>(range / 254.0);
    step[i] = s > 0.f ? std::max(s, std::numeric_limits<float>::min()) : 0.f;
  }
}

void sq8_encode(const float* x, std::size_t n, std::size_t d, const float* mid, const float* step,
                uint8_t* blocks, std::size_t first_slot, std::size_t num_threads, const int64_t* slots,
                const float* bases, const int32_t* base_of, float* item_scales) {
  const std::size_t groups = sq8_groups(d), block_bytes = sq8_block_bytes(d), chunk = 4096;
  // z = (x - base - mid) / step in double: finite for any finite floats and steps that are
  // 0 or at least the smallest normal float (the bindings check), where float could overflow.
  std::vector<double> inverse(d);
  for (std::size_t i = 0; i < d; ++i) inverse[i] = step[i] > 0.f ? 1.0 / step[i] : 0.0;
  parallel_for((n + chunk - 1) / chunk, std::max<std::size_t>(1, num_threads), [&](std::size_t c) {
    std::vector<double> z(d);
    for (std::size_t r = c * chunk; r < std::min(n, (c + 1) * chunk); ++r) {
      const std::size_t slot = slots ? static_cast<std::size_t>(slots[r]) : first_slot + r;
      uint8_t* dst = blocks + (slot / kSq8Block) * block_bytes + (slot % kSq8Block) * 4;
      const float* base = bases && base_of ? bases + static_cast<std::size_t>(base_of[r]) * d : nullptr;
      double largest = 0.0;
      for (std::size_t i = 0; i < d; ++i) {
        const double v = base ? static_cast<double>(x[r * d + i]) - base[i] : x[r * d + i];
        z[i] = (v - mid[i]) * inverse[i];
        largest = std::max(largest, std::fabs(z[i]));
      }
      double factor = 1.0;  // z -> s
      if (item_scales) {
        // The scale as stored (a float, at most the largest float), and s from that value.
        const float a = static_cast<float>(std::min(largest / 127.0, double{std::numeric_limits<float>::max()}));
        item_scales[slot] = a;
        factor = a > 0.f ? 1.0 / a : 0.0;
      }
      for (std::size_t i = 0; i < 4 * groups; ++i) {
        const int s = i < d ? sq8_level(z[i] * factor) : 0;
        dst[(i / 4) * 64 + i % 4] = static_cast<uint8_t>(s + 128);
      }
    }
  });
}

void sq8_copy_slots(const uint8_t* src, const int64_t* src_slots, uint8_t* dst, const int64_t* dst_slots,
                    std::size_t count, std::size_t d) {
  const std::size_t groups = sq8_groups(d), block_bytes = sq8_block_bytes(d);
  for (std::size_t j = 0; j < count; ++j) {
    const std::size_t a = static_cast<std::size_t>(src_slots[j]), b = static_cast<std::size_t>(dst_slots[j]);
    const uint8_t* from = src + (a / kSq8Block) * block_bytes + (a % kSq8Block) * 4;
    uint8_t* to = dst + (b / kSq8Block) * block_bytes + (b % kSq8Block) * 4;
    for (std::size_t g = 0; g < groups; ++g) std::memcpy(to + g * 64, from + g * 64, 4);
  }
}

void sq8_decode(const uint8_t* blocks, std::size_t first, std::size_t n, std::size_t d,
                const float* mid, const float* step, float* out, const float* item_scales) {
  const std::size_t block_bytes = sq8_block_bytes(d);
  for (std::size_t r = 0; r < n; ++r) {
    const std::size_t slot = first + r;
    const uint8_t* src = blocks + (slot / kSq8Block) * block_bytes + (slot % kSq8Block) * 4;
    const float a = item_scales ? item_scales[slot] : 1.f;
    for (std::size_t i = 0; i < d; ++i)
      out[r * d + i] = mid[i] + a * static_cast<float>(static_cast<int>(src[(i / 4) * 64 + i % 4]) - 128) * step[i];
  }
}

void fp16_encode(const float* x, std::size_t count, uint16_t* out) {
  for (std::size_t i = 0; i < count; ++i) out[i] = half_from_float(x[i]);
}

void fp16_decode(const uint16_t* h, std::size_t count, float* out) { fp16_decode_active(h, count, out); }

void search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
            const topk::Filter& filter, std::size_t rerank, std::size_t num_threads,
            int64_t* out_ids, float* out_scores) {
  if (index.d == 0) throw std::invalid_argument("dimension must be positive");
  if (k == 0) throw std::invalid_argument("k must be positive");
  if (nq == 0) return;
  num_threads = std::max<std::size_t>(1, num_threads);
  if (rerank == 0 || !index.vectors) {
    codec_search(index, queries, nq, k, filter, num_threads, out_ids, out_scores);
    return;
  }
  // rerank * k saturates at n (a huge rerank must not wrap to a short list).
  const std::size_t shortlist = std::max(k, rerank > index.n / k ? index.n : std::min(index.n, rerank * k));
  std::vector<int64_t> candidate_ids(nq * shortlist);
  std::vector<float> candidate_scores(nq * shortlist);
  codec_search(index, queries, nq, shortlist, filter, num_threads, candidate_ids.data(),
               candidate_scores.data(), /*sorted_rows=*/false);
  topk::RescoreTerm exact;
  exact.matrix = index.vectors;
  exact.d = index.d;
  exact.queries = queries;
  topk::rescore(candidate_ids.data(), nq, shortlist, index.n, &exact, 1, nullptr, k, num_threads, out_ids,
                out_scores);
}

const char* sq8_kernel_name() { return active_sq8().name; }

void set_vnni_enabled(bool enabled) { simd::set_feature_enabled(simd::Feature::vnni, enabled); }

bool vnni_supported() {
#if defined(LLMREC_HAVE_AVX512VNNI)
  return simd::cpu_capabilities().vnni && simd::is_supported(simd::Level::avx512);
#else
  return false;
#endif
}

}  // namespace llmrec::quant
