// Shared by the binding files: array types, argument checks, filter conversion and the
// top-k result arrays.
// Inputs arrive validated and converted by the Python facades; these checks only guard
// memory safety against direct calls into llmrec._core.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "llmrec/topk.hpp"

namespace llmrec::bindings {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style>;
using IdArray = py::array_t<int64_t, py::array::c_style>;
using ByteArray = py::array_t<uint8_t, py::array::c_style>;

// The const char* overload keeps checks inside loops free of string construction.
inline void require(bool ok, const char* message) {
  if (!ok) throw py::value_error(message);
}
inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

// Builds a top-k Filter over n items and nq queries from the optional arrays the
// facades pass (exclusions as CSR, allow as a byte mask or sorted ids), checking every
// index that the search will use to touch memory.
inline llmrec::topk::Filter make_filter(std::size_t n, std::size_t nq, const std::optional<IdArray>& exclude_indptr,
                                 const std::optional<IdArray>& exclude_ids,
                                 const std::optional<ByteArray>& allow_mask,
                                 const std::optional<IdArray>& allow_ids) {
  llmrec::topk::Filter filter;
  if (exclude_indptr || exclude_ids) {
    require(exclude_indptr && exclude_ids, "exclude needs both indptr and ids");
    require(static_cast<std::size_t>(exclude_indptr->size()) == nq + 1, "exclude indptr must have nq + 1 entries");
    filter.exclude_indptr = exclude_indptr->data();
    filter.exclude_ids = exclude_ids->data();
    require(filter.exclude_indptr[0] == 0 && filter.exclude_indptr[nq] == exclude_ids->size(),
            "exclude indptr does not match its ids");
    for (std::size_t q = 0; q < nq; ++q)
      require(filter.exclude_indptr[q] <= filter.exclude_indptr[q + 1], "exclude indptr must be non-decreasing");
  }
  if (allow_mask) {
    require(static_cast<std::size_t>(allow_mask->size()) == n, "allow mask must have one entry per item");
    filter.allow_mask = allow_mask->data();
  }
  if (allow_ids) {
    require(!allow_mask, "give allow as a mask or as ids, not both");
    filter.allow_ids = allow_ids->data();
    filter.n_allow_ids = allow_ids->size();
    for (std::size_t i = 0; i < filter.n_allow_ids; ++i)
      require(filter.allow_ids[i] >= 0 && static_cast<std::size_t>(filter.allow_ids[i]) < n &&
                  (i == 0 || filter.allow_ids[i - 1] < filter.allow_ids[i]),
              "allow ids must be sorted, unique and in [0, n)");
  }
  return filter;
}

// The (ids int64, scores float32) arrays of shape (nq, k) that every top-k call returns:
// allocates them, runs fill(ids, scores) with the GIL released, returns them as a tuple.
template <class Fill>
py::tuple topk_result(std::size_t nq, std::size_t k, Fill&& fill) {
  IdArray ids({nq, k});
  FloatArray scores({nq, k});
  int64_t* ids_out = ids.mutable_data();
  float* scores_out = scores.mutable_data();
  {
    py::gil_scoped_release release;
    fill(ids_out, scores_out);
  }
  return py::make_tuple(ids, scores);
}

}  // namespace llmrec::bindings
