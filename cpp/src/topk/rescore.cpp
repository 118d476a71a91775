// Candidate re-scoring: a few hundred gathered rows per query, scored by several terms
// and cut to the best k.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../simd/dot.hpp"
#include "llmrec/thread_pool.hpp"
#include "llmrec/topk.hpp"
#include "select.hpp"

namespace llmrec::topk {
namespace {

// int8 rows (the text codes; a free-text request re-scores tens of thousands, see
// recommender/text_lists.py) and float rows each have their SIMD dot product.
float term_dot(const RescoreTerm& term, std::size_t item, std::size_t q, const simd::DotKernels& dot) {
  const std::size_t row = term.row_map ? static_cast<std::size_t>(term.row_map[item]) : item;
  const float value = term.codes ? dot.dot_i8(term.codes + row * term.d, term.queries + q * term.d, term.d)
                                 : dot.dot(term.matrix + row * term.d, term.queries + q * term.d, term.d);
  return term.row_scale ? value * term.row_scale[row] : value;
}

void rescore_query(const int64_t* candidates, std::size_t c, const RescoreTerm* terms,
                   std::size_t n_terms, std::size_t q, float offset, std::size_t k,
                   const simd::DotKernels& dot, std::vector<detail::Hit>& kept,
                   int64_t* out_ids, float* out_scores) {
  // Candidates are scattered rows, which defeat the hardware prefetcher: every term's
  // row is fetched whole a few candidates ahead.
  constexpr std::size_t kAhead = 8;
  const auto prefetch = [&](std::size_t j) {
    if (candidates[j] < 0) return;
    const std::size_t item = static_cast<std::size_t>(candidates[j]);
    for (std::size_t t = 0; t < n_terms; ++t) {
      const RescoreTerm& term = terms[t];
      const std::size_t row = term.row_map ? static_cast<std::size_t>(term.row_map[item]) : item;
      const char* row_at = term.codes ? reinterpret_cast<const char*>(term.codes + row * term.d)
                                      : reinterpret_cast<const char*>(term.matrix + row * term.d);
      const std::size_t bytes = term.d * (term.codes ? sizeof(int8_t) : sizeof(float));
      for (std::size_t at = 0; at < bytes; at += 64) __builtin_prefetch(row_at + at);
      // and the per-item scale and flag: one more scattered line each
      if (term.row_scale) __builtin_prefetch(term.row_scale + row);
      if (term.applies) __builtin_prefetch(term.applies + item);
    }
  };
  for (std::size_t j = 0; j < std::min(kAhead, c); ++j) prefetch(j);
  kept.clear();
  for (std::size_t j = 0; j < c; ++j) {
    if (j + kAhead < c) prefetch(j + kAhead);
    const int64_t item = candidates[j];
    if (item < 0) continue;
    double score = -static_cast<double>(offset);
    for (std::size_t t = 0; t < n_terms; ++t) {
      const RescoreTerm& term = terms[t];
      if (term.applies && !term.applies[item]) {
        score += term.fallback[q];
      } else {
        score += term_dot(term, static_cast<std::size_t>(item), q, dot);
      }
    }
    const float value = static_cast<float>(score);
    if (std::isfinite(value)) kept.emplace_back(value, item);
  }
  std::size_t m = detail::select_best(kept, k);
  // A repeated candidate id scores the same each time, so its copies sort next to each
  // other. Only when the best m hold such a pair (rare: callers pass distinct ids) is the
  // whole list sorted and thinned to one entry per id.
  const auto same = [](const detail::Hit& a, const detail::Hit& b) { return a.second == b.second; };
  const auto best_end = kept.begin() + static_cast<std::ptrdiff_t>(m);
  if (m > 1 && std::adjacent_find(kept.begin(), best_end, same) != best_end) {
    std::sort(kept.begin(), kept.end(), detail::ranks_before);
    kept.erase(std::unique(kept.begin(), kept.end(), same), kept.end());
    m = std::min(k, kept.size());
  }
  detail::write_row(kept.data(), m, k, out_ids, out_scores);
}

}  // namespace

void rescore(const int64_t* candidates, std::size_t nq, std::size_t c, std::size_t /*n*/,
             const RescoreTerm* terms, std::size_t n_terms, const float* offset, std::size_t k,
             std::size_t num_threads, int64_t* out_ids, float* out_scores) {
  const simd::DotKernels dot = simd::dot_kernels();
  constexpr std::size_t kQueriesPerTask = 16;  // a task is ~16 x c row gathers
  const std::size_t n_tasks = (nq + kQueriesPerTask - 1) / kQueriesPerTask;
  parallel_for(n_tasks, num_threads, [&](std::size_t task) {
    std::vector<detail::Hit> kept;
    kept.reserve(c);
    const std::size_t end = std::min(nq, (task + 1) * kQueriesPerTask);
    for (std::size_t q = task * kQueriesPerTask; q < end; ++q)
      rescore_query(candidates + q * c, c, terms, n_terms, q, offset ? offset[q] : 0.f, k, dot, kept, out_ids + q * k,
                    out_scores + q * k);
  });
}

}  // namespace llmrec::topk
