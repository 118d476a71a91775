// Internal: the result order of every top-k row, written once. Rows are sorted by score
// descending with ties broken by the smaller id, cut to k, and padded with id -1 and
// score -inf where fewer than k items qualify (the contract of llmrec/topk.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace llmrec::topk::detail {

using Hit = std::pair<float, int64_t>;  // (score, item id)

// True when candidate a ranks below candidate b: lower score, or equal score, larger id.
inline bool ranks_below(float sa, int64_t ia, float sb, int64_t ib) {
  return sa < sb || (sa == sb && ia > ib);
}

// The result order: better score first, then smaller id. A function object rather than
// a function, so that the sorts below inline it (a function pointer would not be).
inline constexpr auto ranks_before = [](const Hit& a, const Hit& b) {
  return ranks_below(b.first, b.second, a.first, a.second);
};

// Puts the best min(k, hits.size()) hits first, in result order; returns that count.
inline std::size_t select_best(std::vector<Hit>& hits, std::size_t k) {
  const std::size_t keep = std::min(k, hits.size());
  // A full sort when every hit is kept: partial_sort would heap-sort them all.
  if (keep == hits.size())
    std::sort(hits.begin(), hits.end(), ranks_before);
  else
    std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), ranks_before);
  return keep;
}

// Writes the first `keep` hits (keep <= k) to a k-wide output row and pads the rest.
inline void write_row(const Hit* hits, std::size_t keep, std::size_t k, int64_t* ids, float* scores) {
  for (std::size_t j = 0; j < keep; ++j) {
    scores[j] = hits[j].first;
    ids[j] = hits[j].second;
  }
  std::fill(ids + keep, ids + k, int64_t{-1});
  std::fill(scores + keep, scores + k, -std::numeric_limits<float>::infinity());
}

// select_best, then write_row: one query's candidates as its sorted, padded row.
inline void write_best(std::vector<Hit>& hits, std::size_t k, int64_t* ids, float* scores) {
  write_row(hits.data(), select_best(hits, k), k, ids, scores);
}

}  // namespace llmrec::topk::detail
