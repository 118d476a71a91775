// Shared by the binding files: array types, argument checks, filter conversion and the
// top-k result arrays.
// The private module is reachable from Python and is what file loaders feed, so every
// entry point checks everything it indexes memory with, whatever its caller: shapes,
// lengths, ids, slots, sizes (without overflow), thread counts and output arrays.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "llmrec/topk.hpp"

namespace llmrec::bindings {

namespace py = pybind11;

// Every array argument of the private module: C-contiguous and aligned for its type.
// pybind11's array_t converts other layouts and dtypes, but by default keeps a
// C-contiguous array of the right dtype that starts at an odd address (a view of a
// byte buffer at offset 1): the kernels would then read misaligned floats and ints,
// which is undefined behaviour (UBSan flags it; aligned SIMD loads would fault). The
// aligned flag makes the conversion copy such an array once instead.
inline constexpr int kInputFlags = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
template <class T>
using InputArray = py::array_t<T, kInputFlags>;

using FloatArray = InputArray<float>;
using IdArray = InputArray<int64_t>;
using ByteArray = InputArray<uint8_t>;
using HalfArray = InputArray<uint16_t>;  // fp16 codes and sq8 base numbers
using Int32Array = InputArray<int32_t>;

// The const char* overload keeps checks inside loops free of string construction.
inline void require(bool ok, const char* message) {
  if (!ok) throw py::value_error(message);
}
inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

// An array the call writes into, returned as a typed view of the caller's own memory.
// py::array_t arguments would silently convert a Fortran-ordered, strided, read-only or
// other-dtype array into a temporary, so the results would never reach the caller:
// those are refused instead (TypeError for the wrong type or dtype, ValueError for the
// layout), naming the argument.
template <class T>
InputArray<T> output_array(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array (it is written in place)");
  const auto array = py::reinterpret_borrow<py::array>(obj);
  if (!array.dtype().equal(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                         " (it is written in place), got " + std::string(py::str(array.dtype())));
  if (!(array.flags() & py::array::c_style) || reinterpret_cast<std::uintptr_t>(array.data()) % alignof(T) != 0)
    throw py::value_error(std::string(name) + " must be C-contiguous and aligned (it is written in place)");
  if (!array.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  return py::reinterpret_borrow<InputArray<T>>(obj);
}

// Throws unless all `count` values are finite.
inline void require_finite(const float* values, std::size_t count, const std::string& name) {
  // v - v is 0 exactly for finite v and NaN otherwise: a test the compiler vectorises.
  bool finite = true;
  for (std::size_t i = 0; i < count; ++i) finite &= (values[i] - values[i]) == 0.f;
  require(finite, name + " contains NaN or infinite values");
}

// The largest L2 norm an item vector or a query may have: 2**63, so that every inner
// product of two such vectors, and every partial sum on the way, stays below 2**126,
// well inside float32 (2**128). Larger norms would make scores overflow to inf or NaN
// and the items vanish from results.
inline constexpr double kMaxVectorNorm = 9223372036854775808.0;  // 2**63

// Throws unless every row of an n x d matrix is finite with L2 norm <= kMaxVectorNorm.
inline void require_bounded_rows(const float* rows, std::size_t n, std::size_t d, const std::string& name) {
  bool ok = true;
  for (std::size_t r = 0; r < n; ++r) {
    double sum = 0.0;
    for (std::size_t i = 0; i < d; ++i) sum += static_cast<double>(rows[r * d + i]) * rows[r * d + i];
    ok &= sum <= kMaxVectorNorm * kMaxVectorNorm;  // false for NaN and inf too
  }
  require(ok, name + " must be finite with L2 norm at most 2**63 (~9.2e18) per row, so that inner "
                     "products are finite in float32");
}

// n * d without wrapping, or a ValueError.
inline std::size_t checked_product(std::size_t a, std::size_t b, const char* what) {
  require(b == 0 || a <= std::numeric_limits<std::size_t>::max() / b, std::string(what) + " is too large");
  return a * b;
}

// Builds a top-k Filter over n items and nq queries from the optional arrays the
// facades pass (exclusions as CSR, allow as a byte mask or sorted ids), checking every
// index that the search will use to touch memory. Exclusion ids may come in any order:
// the search looks them up by binary search, so rows that are not sorted are sorted
// into `sorted_exclusions` (the facades pass sorted rows, which cost one pass to check).
inline llmrec::topk::Filter make_filter(std::size_t n, std::size_t nq, const std::optional<IdArray>& exclude_indptr,
                                 const std::optional<IdArray>& exclude_ids,
                                 const std::optional<ByteArray>& allow_mask,
                                 const std::optional<IdArray>& allow_ids,
                                 std::vector<int64_t>& sorted_exclusions,
                                 const std::optional<ByteArray>& deleted_mask = std::nullopt) {
  llmrec::topk::Filter filter;
  if (deleted_mask) {
    require(deleted_mask->ndim() == 1 && static_cast<std::size_t>(deleted_mask->size()) == n,
            "deleted mask must have one entry per item");
    filter.deleted = deleted_mask->data();
  }
  if (exclude_indptr || exclude_ids) {
    require(exclude_indptr && exclude_ids, "exclude needs both indptr and ids");
    require(exclude_indptr->ndim() == 1 && static_cast<std::size_t>(exclude_indptr->size()) == nq + 1,
            "exclude indptr must have nq + 1 entries");
    const int64_t* indptr = exclude_indptr->data();
    const int64_t* ids = exclude_ids->data();
    require(indptr[0] == 0 && indptr[nq] == exclude_ids->size(), "exclude indptr does not match its ids");
    bool monotone = true, sorted = true;
    for (std::size_t q = 0; q < nq; ++q) monotone &= indptr[q] <= indptr[q + 1];
    require(monotone, "exclude indptr must be non-decreasing");
    for (std::size_t q = 0; q < nq; ++q)
      for (int64_t e = indptr[q] + 1; e < indptr[q + 1]; ++e) sorted &= ids[e - 1] <= ids[e];
    if (!sorted) {
      sorted_exclusions.assign(ids, ids + exclude_ids->size());
      for (std::size_t q = 0; q < nq; ++q)
        std::sort(sorted_exclusions.begin() + indptr[q], sorted_exclusions.begin() + indptr[q + 1]);
      ids = sorted_exclusions.data();
    }
    filter.exclude_indptr = indptr;
    filter.exclude_ids = ids;
  }
  if (allow_mask) {
    require(allow_mask->ndim() == 1 && static_cast<std::size_t>(allow_mask->size()) == n, "allow mask must have one entry per item");
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

// Results are k columns wide, padded with -1/-inf where fewer items qualify. k may exceed
// what a call can return (a caller's fixed k on a small catalogue) but not both that and
// kMaxPaddedK, so that a careless k (2**27 on 300 items) cannot allocate, or loop, without
// bound. The public rule is the same (python/llmrec/_checks.py check_k).
inline constexpr std::size_t kMaxPaddedK = 1024;

// k as a size, or a ValueError unless 1 <= k <= max(n_items, kMaxPaddedK); n_items is
// what the call ranks (`what` names it in the message). Checked before anything is allocated.
inline std::size_t checked_k(long k, std::size_t n_items, const char* what) {
  require(k > 0, "k must be positive");
  const std::size_t limit = std::max(n_items, kMaxPaddedK);
  if (static_cast<unsigned long>(k) > limit)
    throw py::value_error("k must be at most max(" + std::string(what) + ", " + std::to_string(kMaxPaddedK) +
                          ") = " + std::to_string(limit) + " (beyond that a result is padding only), got " +
                          std::to_string(k));
  return static_cast<std::size_t>(k);
}

// The (ids int64, scores float32) arrays of shape (nq, k) that every top-k call returns:
// allocates them, runs fill(ids, scores) with the GIL released, returns them as a tuple.
template <class Fill>
py::tuple topk_result(std::size_t nq, std::size_t k, Fill&& fill) {
  // The result is nq * k ids and scores: refuse sizes that wrap or could never be allocated.
  require(k <= (std::size_t{1} << 40) && checked_product(nq, k, "n_queries * k") <= (std::size_t{1} << 40),
          "n_queries * k is too large: ask for fewer results");
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
