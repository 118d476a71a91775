// Exact top-k search by inner product: score query vectors against item vectors and keep
// the best k per query, with per-query exclusions and a shared allow-list applied inside
// the scan. The full (queries x items) score matrix is never materialised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace llmrec::topk {

// Which items may be returned. All pointers are optional.
struct Filter {
  // Per-query exclusions in CSR form: the ids excluded for query q are
  // exclude_ids[exclude_indptr[q] .. exclude_indptr[q + 1]), sorted ascending.
  const int64_t* exclude_indptr = nullptr;
  const int64_t* exclude_ids = nullptr;
  // Items allowed for every query, as a byte mask of length n (non-zero = allowed)
  // or as sorted, unique ids. Give at most one of the two.
  const uint8_t* allow_mask = nullptr;
  const int64_t* allow_ids = nullptr;
  std::size_t n_allow_ids = 0;
  // Rows removed from the index, as a byte mask of length n (non-zero = removed): never
  // returned, for any query. Checked per hit like the allow mask, so a search still
  // returns k items wherever k live ones qualify.
  const uint8_t* deleted = nullptr;
};

// items: n x d row-major; queries: nq x d row-major. Writes nq x k ids and scores,
// each row sorted by score descending, ties by smaller id; rows with fewer than k
// qualifying items are padded with id -1 and score -inf.
// With normalize_queries, each query is scaled to unit length first (zero stays zero),
// which together with unit-length items gives cosine similarity.
// With batch_invariant, the items are packed (PackedItems) and searched by search_packed:
// the score of each (query, item) pair is then bit-for-bit the same whatever the number
// of queries searched together (at a given SIMD level).
void search(const float* items, std::size_t n, std::size_t d, const float* queries,
            std::size_t nq, std::size_t k, const Filter& filter, bool normalize_queries,
            std::size_t num_threads, int64_t* out_ids, float* out_scores,
            bool batch_invariant = false);

// Item rows packed for the batch-invariant search, built once and searched many times
// (an inverted file's centroids). Groups of kGroup items are stored as d rows of kGroup
// floats ([group][dimension][item], zero past n, 64-byte aligned), so that SIMD lanes run
// across items and every score is one multiply-add chain over the dimensions in order.
class PackedItems {
 public:
  static constexpr std::size_t kGroup = 16;

  PackedItems() = default;
  PackedItems(const float* items, std::size_t n, std::size_t d);
  std::size_t n() const { return n_; }
  std::size_t d() const { return d_; }
  const float* data() const { return values_.get(); }

 private:
  std::size_t n_ = 0, d_ = 0;
  std::shared_ptr<const float> values_;  // shared: copies of a view share one packing
};

// Exact top-k by inner product over packed items, with search's contract. Each
// (query, item) score is computed the same way whatever the number of queries, their
// position in the batch and the thread count: one fused multiply-add per dimension in
// order from zero (separate multiply and add at the scalar level), so it is bit-for-bit
// the same at a given SIMD level. Inverted lists need this: an item assigned to a list
// in a batch must rank that list the same way when it is later searched alone, or exact
// ties send the query elsewhere.
void search_packed(const PackedItems& items, const float* queries, std::size_t nq, std::size_t k,
                   const Filter& filter, std::size_t num_threads, int64_t* out_ids, float* out_scores);

// One term of a candidate re-scoring: for query q and candidate item i it adds
// row_scale[i]·(row i · queries[q]) (rows of length d; without row_scale the factor is
// 1), or fallback[q] where applies[i] is 0 (both optional: without `applies` the term
// holds for every item). Row i is matrix[i] (float32) or, when `codes` is set, the int8
// codes[i] (then row_scale turns the codes back into the stored vector's scale). With
// row_map, item i's row (and row scale) is stored at row_map[i] instead: rows kept in
// another order than the items' (the int8 text laid out list by list, so that an
// inverted list's items are one contiguous run; recommender/text_lists.py).
struct RescoreTerm {
  const float* matrix = nullptr;   // n x d item rows (float32), or
  const int8_t* codes = nullptr;   // n x d item rows (int8)
  std::size_t d = 0;
  const float* queries = nullptr;  // nq x d
  const uint8_t* applies = nullptr;
  const float* fallback = nullptr;
  const float* row_scale = nullptr;  // n factors, optional
  const int32_t* row_map = nullptr;  // n rows in [0, n), optional
};

// Exact scores of given candidates and the best k of them per query: candidate j of
// query q is candidates[q*c + j] (id -1 = empty) and scores Σ_t term_t − offset[q] (offset
// optional: 0 without it). Writes
// nq x k ids and scores sorted by score descending, ties by smaller id, padded with -1 /
// -inf; candidates whose score is not finite are dropped, and an id repeated within a
// row is returned once. Ids must be in [-1, n).
void rescore(const int64_t* candidates, std::size_t nq, std::size_t c, std::size_t n,
             const RescoreTerm* terms, std::size_t n_terms, const float* offset, std::size_t k,
             std::size_t num_threads, int64_t* out_ids, float* out_scores);

// Scales each row of an n x d matrix to unit L2 norm in place; zero rows stay zero.
void normalize_rows(float* rows, std::size_t n, std::size_t d, std::size_t num_threads);

}  // namespace llmrec::topk
