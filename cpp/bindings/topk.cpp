// Bindings for exact top-k search. Inputs arrive validated and converted by the Python
// facade (python/llmrec/index.py); the checks here only guard memory safety.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

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

py::tuple search_exact(const FloatArray& items, const FloatArray& queries, long k,
                       const std::optional<IdArray>& exclude_indptr,
                       const std::optional<IdArray>& exclude_ids,
                       const std::optional<ByteArray>& allow_mask,
                       const std::optional<IdArray>& allow_ids, bool normalize_queries,
                       long num_threads) {
  require(items.ndim() == 2, "items must be 2-D");
  require(queries.ndim() == 2, "queries must be 2-D");
  const std::size_t n = items.shape(0), d = items.shape(1), nq = queries.shape(0);
  require(d > 0 && static_cast<std::size_t>(queries.shape(1)) == d,
          "queries must have the items' dimension");
  require(k > 0, "k must be positive");
  const llmrec::topk::Filter filter =
      make_filter(n, nq, exclude_indptr, exclude_ids, allow_mask, allow_ids);
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  IdArray ids({nq, static_cast<std::size_t>(k)});
  FloatArray scores({nq, static_cast<std::size_t>(k)});
  {
    int64_t* ids_out = ids.mutable_data();
    float* scores_out = scores.mutable_data();
    py::gil_scoped_release release;
    llmrec::topk::search(items.data(), n, d, queries.data(), nq, static_cast<std::size_t>(k), filter,
                         normalize_queries, threads, ids_out, scores_out);
  }
  return py::make_tuple(ids, scores);
}

void normalize_rows(FloatArray& rows, long num_threads) {
  require(rows.ndim() == 2, "rows must be 2-D");
  require(rows.writeable(), "rows must be writeable");
  const std::size_t n = rows.shape(0), d = rows.shape(1);
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  float* data = rows.mutable_data();
  py::gil_scoped_release release;
  llmrec::topk::normalize_rows(data, n, d, threads);
}

}  // namespace

void register_topk(py::module_& m) {
  m.def("search_exact", &search_exact, py::arg("items"), py::arg("queries"), py::arg("k"),
        py::arg("exclude_indptr") = py::none(), py::arg("exclude_ids") = py::none(),
        py::arg("allow_mask") = py::none(), py::arg("allow_ids") = py::none(),
        py::arg("normalize_queries") = false, py::arg("num_threads") = 0,
        "Exact top-k by inner product; returns (ids int64 (nq, k), scores float32 (nq, k)).");
  m.def("normalize_rows", &normalize_rows, py::arg("rows"), py::arg("num_threads") = 0,
        "Scales each row of a float32 C-contiguous matrix to unit L2 norm, in place.");
}
