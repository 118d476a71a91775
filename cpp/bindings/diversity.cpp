// Bindings for MMR diversity re-ranking. Inputs arrive validated and converted by the
// Python facade (python/llmrec/diversity.py); the checks here only guard memory safety.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "common.hpp"
#include "llmrec/diversity.hpp"
#include "llmrec/thread_pool.hpp"

namespace py = pybind11;

namespace {

using llmrec::bindings::FloatArray;
using llmrec::bindings::IdArray;
using llmrec::bindings::require;
using llmrec::bindings::topk_result;

py::tuple mmr_rerank(const IdArray& candidates, const FloatArray& relevance,
                     const FloatArray& items, long k, double lambda, long num_threads) {
  require(candidates.ndim() == 2, "candidates must be 2-D");
  require(relevance.ndim() == 2 && relevance.shape(0) == candidates.shape(0) &&
              relevance.shape(1) == candidates.shape(1),
          "relevance must have the shape of candidates");
  require(items.ndim() == 2, "item_vectors must be 2-D");
  require(lambda >= 0.0 && lambda <= 1.0, "lambda must be in [0, 1]");
  const std::size_t nq = candidates.shape(0), c = candidates.shape(1);
  const std::size_t n = items.shape(0), d = items.shape(1);
  const std::size_t k_out = llmrec::bindings::checked_k(k, n, "n_items");
  const int64_t* ids = candidates.data();
  bool in_range = true;  // one check at the end: building a message per id costs more than the MMR
  for (std::size_t i = 0; i < nq * c; ++i)
    in_range &= ids[i] >= -1 && ids[i] < static_cast<int64_t>(n);
  require(in_range, "candidate ids must be -1 or in [0, n_items)");
  require(d > 0 || lambda == 0.0, "item_vectors must have at least one column");
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  return topk_result(nq, k_out, [&](int64_t* ids_out, float* relevance_out) {
    llmrec::diversity::mmr(ids, relevance.data(), nq, c, items.data(), n, d,
                           k_out, static_cast<float>(lambda), threads,
                           ids_out, relevance_out);
  });
}

}  // namespace

void register_diversity(py::module_& m) {
  m.def("mmr_rerank", &mmr_rerank, py::arg("candidates"), py::arg("relevance"),
        py::arg("item_vectors"), py::arg("k"), py::arg("lambda_"), py::arg("num_threads") = 0,
        "Greedy MMR re-ranking with cosine similarity; returns (ids int64 (nq, k), "
        "relevance float32 (nq, k)) in selection order. k must be at most max(n_items, 1024).");
}
