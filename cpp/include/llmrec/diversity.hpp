// Diversity re-ranking: maximal marginal relevance (MMR) over per-query candidate lists.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::diversity {

// Greedy MMR selection of k items out of each query's candidates.
//
// For query q the candidates are candidates[q*c .. q*c + c) with relevance
// relevance[q*c .. q*c + c); id -1 marks an empty slot (its relevance is not read).
// With S the items selected so far and sim(i, j) the cosine similarity of item rows i
// and j (rows are normalised here; a zero row has similarity 0 with everything), each
// step picks the remaining candidate maximising
//     mmr(i) = (1 - lambda) * rel(i) - lambda * max_{j in S} sim(i, j),
// where the max over an empty S is 0. Ties go to the higher relevance, then the
// smaller id. lambda = 0 gives the candidates sorted by relevance (item rows are then
// not read); lambda = 1 ignores relevance after the first pick.
//
// Writes nq x k ids (in selection order) and the relevance of each chosen item; slots
// beyond the number of valid candidates get id -1 and relevance -inf. Cost per query:
// O(c*d) to gather and normalise the rows plus O(c*k*d) for the similarity updates.
//
// Requires candidate ids in [-1, n) and 0 <= lambda <= 1. Throws std::invalid_argument
// when an id appears twice in one query or an item row that is read holds NaN or
// infinite values.
void mmr(const int64_t* candidates, const float* relevance, std::size_t nq, std::size_t c,
         const float* items, std::size_t n, std::size_t d, std::size_t k, float lambda,
         std::size_t num_threads, int64_t* out_ids, float* out_relevance);

}  // namespace llmrec::diversity
