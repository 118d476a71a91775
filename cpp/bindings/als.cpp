// Bindings for the ALS solvers (estimator: python/llmrec/als.py). Every entry point
// checks what it indexes with (CSR structure, shapes, the output X) whatever its caller:
// the private module is reachable from Python and is what the loaders feed.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "common.hpp"
#include "llmrec/als.hpp"
#include "llmrec/thread_pool.hpp"

namespace py = pybind11;

namespace {

using llmrec::bindings::FloatArray;
using llmrec::bindings::IdArray;
using llmrec::bindings::Int32Array;

using llmrec::bindings::output_array;
using llmrec::bindings::require;

// Checks a CSR matrix's structure against n_rows and n_cols; O(nnz).
llmrec::als::Csr as_csr(const IdArray& indptr, const Int32Array& indices,
                        const FloatArray& values, std::size_t n_rows, std::size_t n_cols) {
  require(indptr.ndim() == 1 && static_cast<std::size_t>(indptr.size()) == n_rows + 1,
          "indptr must have n_rows + 1 entries");
  require(indices.ndim() == 1 && values.ndim() == 1 && indices.size() == values.size(),
          "indices and values must be 1-D of equal length");
  const int64_t* p = indptr.data();
  require(p[0] == 0 && p[n_rows] == indices.size(), "indptr does not match indices");
  bool monotone = true;
  for (std::size_t u = 0; u < n_rows; ++u) monotone &= p[u] <= p[u + 1];
  require(monotone, "indptr must be non-decreasing");
  const int32_t* idx = indices.data();
  bool in_range = true;  // one check at the end: a message per entry would cost more than the pass
  for (py::ssize_t e = 0; e < indices.size(); ++e) in_range &= idx[e] >= 0 && static_cast<std::size_t>(idx[e]) < n_cols;
  require(in_range, "column index out of range: CSR indices must be in [0, " + std::to_string(n_cols) + ")");
  return {p, idx, values.data(), n_rows};
}

std::size_t factor_dim(const FloatArray& a, const char* name) {
  require(a.ndim() == 2 && a.shape(1) > 0, std::string(name) + " must be a 2-D (n, f) array");
  return static_cast<std::size_t>(a.shape(1));
}

llmrec::als::Options make_options(bool implicit, bool cholesky, int cg_steps, float regularization,
                                  float alpha, float reg_exponent, float prior_strength) {
  llmrec::als::Options o;
  o.feedback = implicit ? llmrec::als::Feedback::implicit : llmrec::als::Feedback::explicit_ratings;
  o.solver = cholesky ? llmrec::als::Solver::cholesky : llmrec::als::Solver::conjugate_gradient;
  o.cg_steps = cg_steps;
  o.regularization = regularization;
  o.alpha = alpha;
  o.reg_exponent = reg_exponent;
  o.prior_strength = prior_strength;
  return o;
}

const float* checked_gramian(const std::optional<FloatArray>& gramian, std::size_t f, bool implicit) {
  if (!implicit) return nullptr;
  require(gramian.has_value(), "implicit feedback needs the Gramian");
  require(gramian->ndim() == 2 && static_cast<std::size_t>(gramian->shape(0)) == f &&
              static_cast<std::size_t>(gramian->shape(1)) == f,
          "gramian must have shape (f, f)");
  return gramian->data();
}

FloatArray gramian(const FloatArray& Y, long num_threads) {
  const std::size_t f = factor_dim(Y, "factors");
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  FloatArray G({f, f});
  float* out = G.mutable_data();
  py::gil_scoped_release release;
  llmrec::als::gramian(Y.data(), static_cast<std::size_t>(Y.shape(0)), f, threads, out);
  return G;
}

void solve(const IdArray& indptr, const Int32Array& indices, const FloatArray& values,
           const FloatArray& Y, const py::object& X_arg, const std::optional<FloatArray>& gramian,
           bool implicit, bool cholesky, int cg_steps, float regularization, float alpha,
           float reg_exponent, float prior_strength, const std::optional<FloatArray>& priors,
           long num_threads) {
  auto X = output_array<float>(X_arg, "X");
  const std::size_t f = factor_dim(Y, "Y");
  require(factor_dim(X, "X") == f, "X and Y must have the same number of factors");
  const std::size_t n_rows = static_cast<std::size_t>(X.shape(0));
  const std::size_t n_y = static_cast<std::size_t>(Y.shape(0));
  const llmrec::als::Csr R = as_csr(indptr, indices, values, n_rows, n_y);
  llmrec::als::Options o = make_options(implicit, cholesky, cg_steps, regularization, alpha,
                                        reg_exponent, prior_strength);
  const float* G = checked_gramian(gramian, f, implicit);
  if (priors) {
    require(priors->ndim() == 2 && static_cast<std::size_t>(priors->shape(0)) == n_rows &&
                static_cast<std::size_t>(priors->shape(1)) == f,
            "priors must have the shape of X");
    o.priors = priors->data();
  }
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  float* out = X.mutable_data();
  py::gil_scoped_release release;
  llmrec::als::solve(R, Y.data(), n_y, f, G, o, threads, out);
}

double loss(const IdArray& indptr, const Int32Array& indices, const FloatArray& values,
            const FloatArray& X, const FloatArray& Y, const std::optional<FloatArray>& gramian,
            bool implicit, float regularization, float alpha, float reg_exponent,
            long num_threads) {
  const std::size_t f = factor_dim(Y, "Y");
  require(factor_dim(X, "X") == f, "X and Y must have the same number of factors");
  const std::size_t n_rows = static_cast<std::size_t>(X.shape(0));
  const llmrec::als::Csr R = as_csr(indptr, indices, values, n_rows, static_cast<std::size_t>(Y.shape(0)));
  const llmrec::als::Options o = make_options(implicit, true, 0, regularization, alpha, reg_exponent, 0.f);
  const float* G = checked_gramian(gramian, f, implicit);
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  py::gil_scoped_release release;
  return llmrec::als::loss(R, X.data(), Y.data(), f, G, o, threads);
}

}  // namespace

void register_als(py::module_& m) {
  m.def("als_gramian", &gramian, py::arg("factors"), py::arg("num_threads") = 0,
        "YᵀY of a float32 (n, f) matrix as a float32 (f, f) matrix (float64 accumulation across chunks).");
  m.def("als_solve", &solve, py::arg("indptr"), py::arg("indices"), py::arg("values"),
        py::arg("Y"), py::arg("X"), py::arg("gramian") = py::none(), py::arg("implicit") = true,
        py::arg("cholesky") = false, py::arg("cg_steps") = 3, py::arg("regularization") = 0.01f,
        py::arg("alpha") = 1.0f, py::arg("reg_exponent") = 0.0f, py::arg("prior_strength") = 0.0f,
        py::arg("priors") = py::none(), py::arg("num_threads") = 0,
        "One ALS half-sweep: updates every row of X in place given Y (see llmrec/als.hpp).");
  m.def("als_loss", &loss, py::arg("indptr"), py::arg("indices"), py::arg("values"), py::arg("X"),
        py::arg("Y"), py::arg("gramian") = py::none(), py::arg("implicit") = true,
        py::arg("regularization") = 0.01f, py::arg("alpha") = 1.0f, py::arg("reg_exponent") = 0.0f,
        py::arg("num_threads") = 0,
        "Data term plus X's regularisation of the ALS objective, in float64.");
}
