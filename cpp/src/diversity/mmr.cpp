#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../simd/dot.hpp"
#include "llmrec/diversity.hpp"
#include "llmrec/thread_pool.hpp"

namespace llmrec::diversity {
namespace {

// One query's remaining candidates, compacted: row r of `unit` is the unit vector of
// ids[r]. A selected candidate is swapped to the end, out of the live range [0, m).
struct Workspace {
  std::unique_ptr<float[]> unit;  // c x d, not zeroed: every row read is written first
  std::vector<int64_t> ids;
  std::vector<float> rel;
  std::vector<float> max_sim;  // max over the selected items of sim(row, item)
  std::vector<int64_t> seen;   // open-addressing set of the ids met so far, -1 = empty
  unsigned seen_bits;

  Workspace(std::size_t c, std::size_t d, bool with_vectors)
      : unit(with_vectors ? new float[c * d] : nullptr), ids(c), rel(c), max_sim(c) {
    seen_bits = 1;
    while ((std::size_t{1} << seen_bits) < 2 * c) ++seen_bits;  // load factor <= 1/2
    seen.resize(std::size_t{1} << seen_bits);
  }

  // Inserts id; false when it was already there.
  bool insert(int64_t id) {
    const std::size_t mask = seen.size() - 1;
    std::size_t slot = (static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull) >> (64 - seen_bits);
    for (; seen[slot] >= 0; slot = (slot + 1) & mask)
      if (seen[slot] == id) return false;
    seen[slot] = id;
    return true;
  }
};

constexpr std::size_t kPrefetchAhead = 8;

inline void prefetch_row(const float* row, std::size_t d) {
  const char* p = reinterpret_cast<const char*>(row);
  for (std::size_t b = 0; b < d * sizeof(float); b += 64) __builtin_prefetch(p + b);
}

// Writes the unit vector of `row` to `out`; a zero row stays zero.
void unit_row(const float* row, std::size_t d, int64_t id, simd::DotF32Fn dot, float* out) {
  const float norm2 = dot(row, row, d);
  if (std::isfinite(norm2) && norm2 >= 1e-30f) {
    const float scale = 1.f / std::sqrt(norm2);
    for (std::size_t i = 0; i < d; ++i) out[i] = row[i] * scale;
    return;
  }
  // NaN/inf entries, finite entries whose squares overflow float, tiny or zero rows.
  double sum = 0.0;
  for (std::size_t i = 0; i < d; ++i) sum += static_cast<double>(row[i]) * row[i];
  if (!std::isfinite(sum))
    throw std::invalid_argument("item_vectors row " + std::to_string(id) +
                                " contains NaN or infinite values");
  const double scale = sum > 0.0 ? 1.0 / std::sqrt(sum) : 0.0;
  for (std::size_t i = 0; i < d; ++i) out[i] = static_cast<float>(row[i] * scale);
}

void mmr_one(std::size_t query, const int64_t* candidates, const float* relevance, std::size_t c,
             const float* items, std::size_t d, std::size_t k, float lambda,
             const simd::DotKernels& kernels, Workspace& ws, int64_t* out_ids,
             float* out_relevance) {
  const bool diverse = lambda > 0.f;
  std::fill(ws.seen.begin(), ws.seen.end(), -1);
  std::size_t m = 0;
  for (std::size_t p = 0; p < c; ++p) {
    const int64_t id = candidates[p];
    // Candidate rows are scattered over the catalogue: ask for a few rows ahead.
    if (diverse && p + kPrefetchAhead < c && candidates[p + kPrefetchAhead] >= 0)
      prefetch_row(items + static_cast<std::size_t>(candidates[p + kPrefetchAhead]) * d, d);
    if (id < 0) continue;
    if (!ws.insert(id))
      throw std::invalid_argument("candidates[" + std::to_string(query) + "] holds item id " +
                                  std::to_string(id) + " more than once; each candidate must "
                                  "appear once per query");
    if (diverse)
      unit_row(items + static_cast<std::size_t>(id) * d, d, id, kernels.dot, ws.unit.get() + m * d);
    ws.ids[m] = id;
    ws.rel[m] = relevance[p];
    ws.max_sim[m] = -std::numeric_limits<float>::infinity();
    ++m;
  }
  const float keep = 1.f - lambda;
  std::size_t taken = 0;
  for (; taken < k && m > 0; ++taken) {
    const bool penalised = diverse && taken > 0;
    std::size_t best = 0;
    float best_score = 0.f;
    for (std::size_t r = 0; r < m; ++r) {
      const float score = penalised ? keep * ws.rel[r] - lambda * ws.max_sim[r] : keep * ws.rel[r];
      const bool better =
          r == 0 || score > best_score ||
          (score == best_score && (ws.rel[r] > ws.rel[best] ||
                                   (ws.rel[r] == ws.rel[best] && ws.ids[r] < ws.ids[best])));
      if (better) {
        best = r;
        best_score = score;
      }
    }
    out_ids[taken] = ws.ids[best];
    out_relevance[taken] = ws.rel[best];
    --m;
    std::swap(ws.ids[best], ws.ids[m]);
    std::swap(ws.rel[best], ws.rel[m]);
    std::swap(ws.max_sim[best], ws.max_sim[m]);
    if (!diverse) continue;
    float* unit = ws.unit.get();
    std::swap_ranges(unit + best * d, unit + best * d + d, unit + m * d);
    if (taken + 1 < k) kernels.max_dot(unit, m, d, unit + m * d, ws.max_sim.data());
  }
  for (; taken < k; ++taken) {
    out_ids[taken] = -1;
    out_relevance[taken] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace

void mmr(const int64_t* candidates, const float* relevance, std::size_t nq, std::size_t c,
         const float* items, std::size_t /*n*/, std::size_t d, std::size_t k, float lambda,
         std::size_t num_threads, int64_t* out_ids, float* out_relevance) {
  if (nq == 0) return;
  const simd::DotKernels kernels = simd::dot_kernels();
  // A few blocks per thread balance uneven candidate counts; each block reuses one
  // workspace for all its queries.
  const std::size_t threads = std::max<std::size_t>(1, std::min(num_threads, nq));
  const std::size_t n_blocks = std::min(nq, threads * 4);
  const std::size_t per_block = (nq + n_blocks - 1) / n_blocks;
  parallel_for((nq + per_block - 1) / per_block, threads, [&](std::size_t block) {
    Workspace ws(c, d, lambda > 0.f);
    const std::size_t end = std::min(nq, (block + 1) * per_block);
    for (std::size_t q = block * per_block; q < end; ++q)
      mmr_one(q, candidates + q * c, relevance + q * c, c, items, d, k, lambda, kernels, ws,
              out_ids + q * k, out_relevance + q * k);
  });
}

}  // namespace llmrec::diversity
