// Bindings for exact top-k search (facade: python/llmrec/index.py). Every argument is
// checked here too: the private module is reachable from Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "llmrec/thread_pool.hpp"
#include "llmrec/topk.hpp"

namespace py = pybind11;

namespace {

using llmrec::bindings::ByteArray;
using llmrec::bindings::FloatArray;
using llmrec::bindings::IdArray;
using llmrec::bindings::make_filter;
using llmrec::bindings::require;
using llmrec::bindings::require_bounded_rows;
using llmrec::bindings::require_finite;
using llmrec::bindings::topk_result;

py::tuple search_exact(const FloatArray& items, const FloatArray& queries, long k,
                       const std::optional<IdArray>& exclude_indptr,
                       const std::optional<IdArray>& exclude_ids,
                       const std::optional<ByteArray>& allow_mask,
                       const std::optional<IdArray>& allow_ids, bool normalize_queries,
                       long num_threads, bool batch_invariant,
                       const std::optional<ByteArray>& deleted_mask) {
  require(items.ndim() == 2, "items must be 2-D");
  require(queries.ndim() == 2, "queries must be 2-D");
  const std::size_t n = items.shape(0), d = items.shape(1), nq = queries.shape(0);
  require(d > 0 && static_cast<std::size_t>(queries.shape(1)) == d,
          "queries must have the items' dimension");
  const std::size_t k_out = llmrec::bindings::checked_k(k, n, "n_items");
  if (normalize_queries)
    require_finite(queries.data(), nq * d, "queries");
  else
    require_bounded_rows(queries.data(), nq, d, "queries");
  std::vector<int64_t> sorted_exclusions;
  const llmrec::topk::Filter filter =
      make_filter(n, nq, exclude_indptr, exclude_ids, allow_mask, allow_ids, sorted_exclusions, deleted_mask);
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  return topk_result(nq, k_out, [&](int64_t* ids_out, float* scores_out) {
    llmrec::topk::search(items.data(), n, d, queries.data(), nq, k_out, filter,
                         normalize_queries, threads, ids_out, scores_out, batch_invariant);
  });
}

void normalize_rows(const py::object& rows_arg, long num_threads) {
  auto rows = llmrec::bindings::output_array<float>(rows_arg, "rows");
  require(rows.ndim() == 2, "rows must be 2-D");
  const std::size_t n = rows.shape(0), d = rows.shape(1);
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  float* data = rows.mutable_data();
  py::gil_scoped_release release;
  llmrec::topk::normalize_rows(data, n, d, threads);
}

using Int8Array = llmrec::bindings::InputArray<int8_t>;
using RowMapArray = llmrec::bindings::InputArray<int32_t>;

py::tuple rescore_candidates(const IdArray& candidates, const std::vector<py::array>& matrices,
                             const std::vector<FloatArray>& queries,
                             const std::vector<std::optional<ByteArray>>& applies,
                             const std::vector<std::optional<FloatArray>>& fallbacks,
                             const FloatArray& offset, long k, long num_threads,
                             const std::vector<std::optional<FloatArray>>& row_scales,
                             const std::vector<std::optional<RowMapArray>>& row_maps) {
  require(candidates.ndim() == 2, "candidates must be 2-D");
  const std::size_t nq = candidates.shape(0), c = candidates.shape(1);
  const std::size_t terms = matrices.size();
  require(queries.size() == terms && applies.size() == terms && fallbacks.size() == terms,
          "one query array, applies and fallback per matrix");
  require(row_scales.empty() || row_scales.size() == terms, "row_scales must be empty or one per matrix");
  require(row_maps.empty() || row_maps.size() == terms, "row_maps must be empty or one per matrix");
  require(terms > 0, "at least one term");
  require(offset.ndim() == 1 && static_cast<std::size_t>(offset.shape(0)) == nq, "offset must have one value per row");
  // float32 matrices are used as given (or converted once); int8 ones are codes.
  std::vector<std::optional<FloatArray>> floats(terms);
  std::vector<std::optional<Int8Array>> codes(terms);
  for (std::size_t t = 0; t < terms; ++t) {
    if (matrices[t].dtype().equal(py::dtype::of<int8_t>())) {
      codes[t] = Int8Array::ensure(matrices[t]);
      require(static_cast<bool>(*codes[t]), "int8 matrices must be convertible to C-contiguous arrays");
    } else {
      auto converted = FloatArray::ensure(matrices[t]);
      if (!converted) throw py::type_error("matrices must be float32 (or int8) arrays");
      floats[t] = std::move(converted);
    }
  }
  const auto rows_of = [&](std::size_t t) -> const py::array& {
    return codes[t] ? static_cast<const py::array&>(*codes[t]) : static_cast<const py::array&>(*floats[t]);
  };
  const std::size_t n = rows_of(0).ndim() == 2 ? rows_of(0).shape(0) : 0;
  const std::size_t k_out = llmrec::bindings::checked_k(k, n, "n_items");
  std::vector<llmrec::topk::RescoreTerm> specs(terms);
  // A matrix with a row map may hold fewer (or more) rows than n: the map says where
  // each item's row is (items without one of their own share a row).
  std::vector<std::size_t> stored(terms, n);
  for (std::size_t t = 0; t < terms; ++t) {
    const py::array& m = rows_of(t);
    const bool mapped = !row_maps.empty() && row_maps[t];
    require(m.ndim() == 2 && (mapped ? m.shape(0) > 0 : static_cast<std::size_t>(m.shape(0)) == n),
            "matrices must be 2-D with the same rows (or at least one row where a row map is given)");
    stored[t] = m.shape(0);
    const std::size_t d = m.shape(1);
    require(queries[t].ndim() == 2 && static_cast<std::size_t>(queries[t].shape(0)) == nq &&
                static_cast<std::size_t>(queries[t].shape(1)) == d,
            "each query array must be (rows, the matrix's columns)");
    specs[t].d = d;
    specs[t].queries = queries[t].data();
    if (codes[t])
      specs[t].codes = codes[t]->data();
    else
      specs[t].matrix = floats[t]->data();
    if (applies[t]) {
      require(applies[t]->ndim() == 1 && static_cast<std::size_t>(applies[t]->shape(0)) == n, "applies must have one byte per item");
      require(fallbacks[t] && fallbacks[t]->ndim() == 1 && static_cast<std::size_t>(fallbacks[t]->shape(0)) == nq,
              "a term with applies needs a fallback per row");
      specs[t].applies = applies[t]->data();
      specs[t].fallback = fallbacks[t]->data();
    }
    if (!row_scales.empty() && row_scales[t]) {
      require(row_scales[t]->ndim() == 1 && static_cast<std::size_t>(row_scales[t]->shape(0)) == stored[t],
              "row_scales must have one value per row of their matrix");
      specs[t].row_scale = row_scales[t]->data();
    }
    if (!row_maps.empty() && row_maps[t]) {
      require(row_maps[t]->ndim() == 1 && static_cast<std::size_t>(row_maps[t]->shape(0)) == n,
              "row_maps must have one row per item");
      specs[t].row_map = row_maps[t]->data();
    }
  }
  const int64_t* ids = candidates.data();
  bool in_range = true;
  for (std::size_t i = 0; i < nq * c; ++i) in_range &= ids[i] >= -1 && ids[i] < static_cast<int64_t>(n);
  require(in_range, "candidate ids must be -1 or in [0, n_items)");
  // Only the candidates' rows and row scales are read: checking those, not all n, keeps a
  // request O(candidates) (the whole check was 2.4 ms per scaled term at 1M items).
  for (std::size_t t = 0; t < terms; ++t) {
    const int32_t* map = specs[t].row_map;
    if (map) {
      bool mapped = true;
      for (std::size_t i = 0; i < nq * c; ++i)
        if (ids[i] >= 0) mapped &= map[ids[i]] >= 0 && static_cast<std::size_t>(map[ids[i]]) < stored[t];
      require(mapped, "row_maps must map each candidate to a row of its matrix");
    }
    if (specs[t].row_scale == nullptr) continue;
    bool finite = true;
    for (std::size_t i = 0; i < nq * c; ++i)
      if (ids[i] >= 0) finite &= std::isfinite(specs[t].row_scale[map ? map[ids[i]] : ids[i]]);
    require(finite, "row_scales must be finite");
  }
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  return topk_result(nq, k_out, [&](int64_t* ids_out, float* scores_out) {
    llmrec::topk::rescore(ids, nq, c, n, specs.data(), terms, offset.data(), k_out,
                          threads, ids_out, scores_out);
  });
}

}  // namespace

void register_topk(py::module_& m) {
  m.def("rescore_candidates", &rescore_candidates, py::arg("candidates"), py::arg("matrices"),
        py::arg("queries"), py::arg("applies"), py::arg("fallbacks"), py::arg("offset"), py::arg("k"),
        py::arg("num_threads") = 0, py::arg("row_scales") = std::vector<std::optional<FloatArray>>(),
        py::arg("row_maps") = std::vector<std::optional<RowMapArray>>(),
        "Scores of candidate ids (-1 = none) as a sum of gathered row dot products minus offset, "
        "and the best k per row: (ids int64 (nq, k), scores float32 (nq, k)). A matrix is float32 "
        "rows or int8 codes; row_scales (optional, one per matrix, each None or one float per item) "
        "multiplies each row's dot product; row_maps (optional, one per matrix, each None or one "
        "int32 per item) gives the row of the matrix (and of its row scales) that holds each item; a "
        "mapped matrix may have any number of rows. "
        "An id repeated within "
        "a row is returned once; k must be at most max(n_items, 1024).");
  m.def("search_exact", &search_exact, py::arg("items"), py::arg("queries"), py::arg("k"),
        py::arg("exclude_indptr") = py::none(), py::arg("exclude_ids") = py::none(),
        py::arg("allow_mask") = py::none(), py::arg("allow_ids") = py::none(),
        py::arg("normalize_queries") = false, py::arg("num_threads") = 0, py::arg("batch_invariant") = false,
        py::arg("deleted_mask") = py::none(),
        "Exact top-k by inner product; returns (ids int64 (nq, k), scores float32 (nq, k)). "
        "Exclusion ids may be in any order; rows whose deleted_mask byte is non-zero are never returned. With batch_invariant, each (query, item) score is "
        "the same whatever the number of queries (as the inverted-list probe ranks lists). "
        "k must be at most max(n_items, 1024).");
  m.def("normalize_rows", &normalize_rows, py::arg("rows"), py::arg("num_threads") = 0,
        "Scales each row of a float32 C-contiguous matrix to unit L2 norm, in place.");
}
