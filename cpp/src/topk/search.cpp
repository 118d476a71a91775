#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include "llmrec/simd.hpp"
#include "llmrec/thread_pool.hpp"
#include "llmrec/topk.hpp"
#include "driver.hpp"
#include "scan.hpp"
#include "select.hpp"

namespace llmrec::topk {
namespace detail {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Query rows scanned together should stay in L2 while item panels stream past them.
constexpr std::size_t kQueryBlockBytes = 256 * 1024;
// Cap on heap memory per wave, so that huge k or nq never allocates without bound.
constexpr std::size_t kTasksPerThread = 4;
constexpr std::size_t kHeapBudgetBytes = 128u << 20;

// A fixed-capacity heap whose root is the worst candidate kept so far.
struct HeapView {
  float* scores;
  int64_t* ids;
  std::size_t* size;
  std::size_t k;

  void push(float score, int64_t id) {
    std::size_t i;
    if (*size < k) {
      i = (*size)++;
      while (i > 0) {  // sift up
        const std::size_t parent = (i - 1) / 2;
        if (!ranks_below(score, id, scores[parent], ids[parent])) break;
        scores[i] = scores[parent];
        ids[i] = ids[parent];
        i = parent;
      }
    } else {
      if (!ranks_below(scores[0], ids[0], score, id)) return;
      i = 0;
      for (;;) {  // sift down from the root
        std::size_t child = 2 * i + 1;
        if (child >= k) break;
        if (child + 1 < k && ranks_below(scores[child + 1], ids[child + 1], scores[child], ids[child]))
          ++child;
        if (!ranks_below(scores[child], ids[child], score, id)) break;
        scores[i] = scores[child];
        ids[i] = ids[child];
        i = child;
      }
    }
    scores[i] = score;
    ids[i] = id;
  }
  float threshold() const { return *size < k ? kNegInf : scores[0]; }
};

// Everything on_hit needs for one scan task: that task's heaps and the filters.
struct TaskSink {
  const Filter* filter;
  const uint8_t* allow_mask;  // checked per hit only when the scan is not already gathered
  std::size_t first_query;    // global index of the job's query 0
  float* heap_scores;
  int64_t* heap_ids;
  std::size_t* heap_sizes;
  float* thresholds;
  std::size_t k;

  bool excluded(std::size_t query, int64_t item) const {
    if (!filter->exclude_indptr) return false;
    const int64_t* lo = filter->exclude_ids + filter->exclude_indptr[query];
    const int64_t* hi = filter->exclude_ids + filter->exclude_indptr[query + 1];
    return std::binary_search(lo, hi, item);
  }

  static void on_hit(void* context, std::size_t query, int64_t item, float score) {
    auto& sink = *static_cast<TaskSink*>(context);
    if (sink.filter->deleted && sink.filter->deleted[item]) return;
    if (sink.allow_mask && !sink.allow_mask[item]) return;
    if (sink.excluded(sink.first_query + query, item)) return;
    HeapView heap{sink.heap_scores + query * sink.k, sink.heap_ids + query * sink.k,
                  sink.heap_sizes + query, sink.k};
    heap.push(score, item);
    sink.thresholds[query] = heap.threshold();
  }
};

// The items to scan: either all rows, or a sorted list of allowed ids (when the
// allow-list is sparse enough that gathering beats a dense scan with a mask test).
struct Candidates {
  const int64_t* positions = nullptr;
  std::size_t count = 0;
  const uint8_t* mask = nullptr;
  std::vector<int64_t> owned_positions;
  std::vector<uint8_t> owned_mask;
};

Candidates plan_candidates(const Filter& filter, std::size_t n, bool gather) {
  Candidates c;
  c.count = n;
  if (filter.allow_ids) {
    if (gather && filter.n_allow_ids * 8 < n) {
      c.positions = filter.allow_ids;
      c.count = filter.n_allow_ids;
    } else {
      c.owned_mask.assign(n, 0);
      for (std::size_t i = 0; i < filter.n_allow_ids; ++i) c.owned_mask[filter.allow_ids[i]] = 1;
      c.mask = c.owned_mask.data();
    }
  } else if (filter.allow_mask) {
    const std::size_t allowed = n - static_cast<std::size_t>(std::count(filter.allow_mask, filter.allow_mask + n, 0));
    if (gather && allowed * 8 < n) {
      c.owned_positions.reserve(allowed);
      for (std::size_t i = 0; i < n; ++i)
        if (filter.allow_mask[i]) c.owned_positions.push_back(static_cast<int64_t>(i));
      c.positions = c.owned_positions.data();
      c.count = allowed;
    } else {
      c.mask = filter.allow_mask;
    }
  }
  return c;
}

// The scale is applied in double: for tiny rows (1e-40) 1 / norm exceeds float32, and
// for huge ones it is subnormal. Every finite row then comes out finite, unit length to
// float32 rounding; non-finite rows stay non-finite (callers check inputs first).
void normalize_row(float* row, std::size_t d) {
  double sum = 0.0;
  for (std::size_t i = 0; i < d; ++i) sum += static_cast<double>(row[i]) * row[i];
  if (sum > 0.0) {
    const double scale = 1.0 / std::sqrt(sum);
    for (std::size_t i = 0; i < d; ++i) row[i] = static_cast<float>(row[i] * scale);
  }
}

}  // namespace

void drive(const Filter& filter, const DriveOptions& options,
           const std::function<void(const ScanTask&)>& scan, int64_t* out_ids,
           float* out_scores) {
  const std::size_t nq = options.nq, k = options.k;
  if (k == 0) throw std::invalid_argument("k must be positive");
  if (nq == 0) return;
  const std::size_t num_threads = std::clamp<std::size_t>(options.num_threads, 1, kMaxThreads);

  const Candidates candidates = plan_candidates(filter, options.n_items, options.gather_sparse_allow);
  const std::size_t k_eff = std::min(k, candidates.count);
  if (k_eff == 0) {
    std::fill(out_ids, out_ids + nq * k, int64_t{-1});
    std::fill(out_scores, out_scores + nq * k, kNegInf);
    return;
  }

  // Work is cut into (query block, item range) tasks. Item ranges give parallelism to
  // few queries over many items; query blocks give it to many queries over few items.
  // With several threads, a few tasks per thread let the pool balance the load when one
  // thread is slowed (a busy core, a page fault) instead of everyone waiting for it.
  // Item ranges cost each query one partial heap per range (its threshold warms up in
  // each, then the heaps are merged): at k = 100 over 100k items, six ranges made two
  // threads slower than one. So items are split only when the queries are too few to
  // give every thread a block of their own.
  const std::size_t max_tasks = num_threads == 1 ? 1 : num_threads * kTasksPerThread;
  const std::size_t l2_block = std::max<std::size_t>(1, kQueryBlockBytes / std::max<std::size_t>(1, options.query_bytes));
  const bool queries_fill_threads = (nq + l2_block - 1) / l2_block >= num_threads;
  const std::size_t item_splits = queries_fill_threads ? 1 : std::clamp<std::size_t>(
      candidates.count / std::max<std::size_t>(1, options.min_items_per_split), 1, max_tasks);
  const std::size_t align = candidates.positions ? 1 : std::max<std::size_t>(1, options.split_align);
  const auto split_point = [&](std::size_t s) {
    if (s == item_splits) return candidates.count;
    return candidates.count * s / item_splits / align * align;
  };
  const std::size_t bytes_per_query_heap = k_eff * (sizeof(float) + sizeof(int64_t));
  std::size_t block = std::min(l2_block, std::max<std::size_t>(1, kHeapBudgetBytes / (bytes_per_query_heap * item_splits)));
  const std::size_t blocks_per_wave = std::max<std::size_t>(1, max_tasks / item_splits);
  if (item_splits == 1 && nq < block * blocks_per_wave)  // spread few queries over the threads
    block = std::max<std::size_t>(1, (nq + blocks_per_wave - 1) / blocks_per_wave);
  const std::size_t wave_queries = block * blocks_per_wave;

  const std::size_t wave_capacity = std::min(nq, wave_queries) * item_splits;
  std::vector<float> heap_scores(wave_capacity * k_eff);
  std::vector<int64_t> heap_ids(wave_capacity * k_eff);
  std::vector<std::size_t> heap_sizes(wave_capacity);
  std::vector<float> thresholds(wave_capacity);

  for (std::size_t w0 = 0; w0 < nq; w0 += wave_queries) {
    const std::size_t wq = std::min(wave_queries, nq - w0);
    const std::size_t n_blocks = (wq + block - 1) / block;
    std::fill(heap_sizes.begin(), heap_sizes.end(), 0);
    std::fill(thresholds.begin(), thresholds.end(), kNegInf);

    // Heaps are laid out [split][query in wave][k].
    parallel_for(n_blocks * item_splits, num_threads, [&](std::size_t task) {
      const std::size_t b = task / item_splits, s = task % item_splits;
      const std::size_t q_begin = b * block, q_count = std::min(block, wq - q_begin);
      const std::size_t slot = s * wq + q_begin;
      TaskSink sink{&filter, candidates.mask, w0 + q_begin,
                    heap_scores.data() + slot * k_eff, heap_ids.data() + slot * k_eff,
                    heap_sizes.data() + slot, thresholds.data() + slot, k_eff};
      const ScanTask scan_task{w0 + q_begin, q_count, candidates.positions, split_point(s),
                               split_point(s + 1), sink.thresholds, &TaskSink::on_hit, &sink};
      if (scan_task.begin < scan_task.end) scan(scan_task);
    });

    const std::size_t merge_block = 64;
    parallel_for((wq + merge_block - 1) / merge_block, num_threads, [&](std::size_t mb) {
      std::vector<Hit> found;
      for (std::size_t q = mb * merge_block; q < std::min(wq, (mb + 1) * merge_block); ++q) {
        found.clear();
        for (std::size_t s = 0; s < item_splits; ++s) {
          const std::size_t slot = s * wq + q;
          for (std::size_t j = 0; j < heap_sizes[slot]; ++j)
            found.emplace_back(heap_scores[slot * k_eff + j], heap_ids[slot * k_eff + j]);
        }
        write_best(found, k, out_ids + (w0 + q) * k, out_scores + (w0 + q) * k);
      }
    });
  }
}

void drive_per_query(const Filter& filter, const DriveOptions& options,
                     const std::function<void(std::size_t, const ScanTask&)>& scan_query,
                     int64_t* out_ids, float* out_scores) {
  const std::size_t nq = options.nq, k = options.k, n = options.n_items;
  if (k == 0) throw std::invalid_argument("k must be positive");
  if (nq == 0) return;
  std::vector<uint8_t> owned_mask;
  const uint8_t* mask = filter.allow_mask;
  if (filter.allow_ids) {
    owned_mask.assign(n, 0);
    for (std::size_t i = 0; i < filter.n_allow_ids; ++i) owned_mask[filter.allow_ids[i]] = 1;
    mask = owned_mask.data();
  }
  const std::size_t per_task = 8;
  parallel_for((nq + per_task - 1) / per_task, std::max<std::size_t>(1, options.num_threads),
               [&](std::size_t t) {
    std::vector<float> heap_scores(k);
    std::vector<int64_t> heap_ids(k);
    std::vector<Hit> found;
    for (std::size_t q = t * per_task; q < std::min(nq, (t + 1) * per_task); ++q) {
      std::size_t size = 0;
      float threshold = kNegInf;
      TaskSink sink{&filter, mask, q, heap_scores.data(), heap_ids.data(), &size, &threshold, k};
      const ScanTask task{q, 1, nullptr, 0, 0, &threshold, &TaskSink::on_hit, &sink};
      scan_query(q, task);
      found.clear();
      for (std::size_t j = 0; j < size; ++j) found.emplace_back(heap_scores[j], heap_ids[j]);
      write_best(found, k, out_ids + q * k, out_scores + q * k);
    }
  });
}

}  // namespace detail

void normalize_rows(float* rows, std::size_t n, std::size_t d, std::size_t num_threads) {
  const std::size_t block = 4096;
  parallel_for((n + block - 1) / block, num_threads, [&](std::size_t b) {
    for (std::size_t i = b * block; i < std::min(n, (b + 1) * block); ++i) detail::normalize_row(rows + i * d, d);
  });
}

void search(const float* items, std::size_t n, std::size_t d, const float* queries,
            std::size_t nq, std::size_t k, const Filter& filter, bool normalize_queries,
            std::size_t num_threads, int64_t* out_ids, float* out_scores, bool batch_invariant) {
  if (d == 0) throw std::invalid_argument("dimension must be positive");
  if (k == 0) throw std::invalid_argument("k must be positive");
  if (nq == 0) return;
  num_threads = std::max<std::size_t>(1, num_threads);

  std::vector<float> normalized;
  if (normalize_queries) {
    normalized.assign(queries, queries + nq * d);
    normalize_rows(normalized.data(), nq, d, num_threads);
    queries = normalized.data();
  }
  if (batch_invariant) {
    search_packed(PackedItems(items, n, d), queries, nq, k, filter, num_threads, out_ids, out_scores);
    return;
  }
  const detail::ScanFn scan = detail::active_scan();
  detail::drive(filter, detail::drive_options(n, nq, k, num_threads, d * sizeof(float)), [&](const detail::ScanTask& task) {
    std::vector<float> scratch(detail::scratch_floats(task.nq, d));
    detail::ScanJob job{queries + task.first_query * d, task.nq, d, items, task.positions,
                        task.begin, task.end, task.thresholds, task.on_hit, task.context,
                        scratch.data()};
    scan(job);
  }, out_ids, out_scores);
}

static_assert(PackedItems::kGroup == detail::PackedScanJob::kGroup, "one group size");

PackedItems::PackedItems(const float* items, std::size_t n, std::size_t d) : n_(n), d_(d) {
  if (d == 0) throw std::invalid_argument("dimension must be positive");
  constexpr std::size_t G = kGroup;
  constexpr std::align_val_t kAlign{64};
  const std::size_t groups = (n + G - 1) / G;
  float* values = static_cast<float*>(::operator new(std::max<std::size_t>(1, groups * d * G) * sizeof(float), kAlign));
  values_ = std::shared_ptr<const float>(values, [kAlign](const float* p) {
    ::operator delete(const_cast<float*>(p), kAlign);
  });
  for (std::size_t g = 0; g < groups; ++g) {
    float* group = values + g * d * G;
    for (std::size_t l = 0; l < G; ++l) {
      const std::size_t item = g * G + l;
      for (std::size_t i = 0; i < d; ++i) group[i * G + l] = item < n ? items[item * d + i] : 0.f;
    }
  }
}

void search_packed(const PackedItems& items, const float* queries, std::size_t nq, std::size_t k,
                   const Filter& filter, std::size_t num_threads, int64_t* out_ids, float* out_scores) {
  const std::size_t d = items.d();
  if (d == 0) throw std::invalid_argument("dimension must be positive");
  if (k == 0) throw std::invalid_argument("k must be positive");
  if (nq == 0) return;
  auto options = detail::drive_options(items.n(), nq, k, std::max<std::size_t>(1, num_threads), d * sizeof(float));
  options.split_align = PackedItems::kGroup;  // item ranges start on a group
  options.gather_sparse_allow = false;        // groups are scanned whole: filters by mask
  const detail::PackedScanFn scan = detail::active_packed_scan();
  detail::drive(filter, options, [&](const detail::ScanTask& task) {
    scan(detail::PackedScanJob{queries + task.first_query * d, task.nq, d, items.data(), task.begin, task.end,
                               task.thresholds, task.on_hit, task.context});
  }, out_ids, out_scores);
}

}  // namespace llmrec::topk
