// Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008) and
// explicit ratings (ALS-WR, Zhou et al. 2008), with optional per-row priors.
//
// One call solves one half-sweep: every row x_u of X (the side being updated) given the
// other side's factors Y held fixed. For a row with observed entries (i, r_i):
//
//   implicit:  (G + reg_u I + Σ_i (c_i − 1) y_i y_iᵀ) x_u = Σ_i c_i y_i + s·prior_u
//              c_i = 1 + alpha·r_i, G = YᵀY (the Gramian, computed once per half-sweep)
//   explicit:  (Σ_i y_i y_iᵀ + reg_u I) x_u = Σ_i r_i y_i + s·prior_u
//
// where reg_u = regularization · n_u^reg_exponent (+ s when priors are given, s being
// prior_strength) and n_u the row's number of observed entries. Rows without observed
// entries are not fitted: they get their prior exactly, or zero without priors.
//
// Factors are float32, row-major; the f×f systems are solved either exactly (Cholesky,
// in float64) or by cg_steps of conjugate gradient warm-started from the current X.
// Work is spread over rows; results do not depend on the number of threads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::als {

// A sparse matrix in CSR form: row u's entries are indices/values[indptr[u] .. indptr[u+1]).
// Values must be finite; for implicit feedback they must be positive.
struct Csr {
  const int64_t* indptr = nullptr;
  const int32_t* indices = nullptr;
  const float* values = nullptr;
  std::size_t n_rows = 0;
};

enum class Feedback { implicit, explicit_ratings };
enum class Solver { conjugate_gradient, cholesky };

struct Options {
  Feedback feedback = Feedback::implicit;
  Solver solver = Solver::conjugate_gradient;
  int cg_steps = 3;
  float regularization = 0.01f;
  float alpha = 1.0f;
  float reg_exponent = 0.0f;     // reg_u = regularization * n_u ^ reg_exponent
  float prior_strength = 0.0f;   // used only with priors
  const float* priors = nullptr; // n_rows × f, row-major; optional
};

// G = YᵀY (f × f, full symmetric, row-major) for Y of n rows.
void gramian(const float* Y, std::size_t n, std::size_t f, std::size_t threads, float* G);

// Updates every row of X (R.n_rows × f) in place given Y (n_y × f). `G` must be YᵀY for
// implicit feedback and is ignored for explicit. Column indices must lie in [0, n_y).
void solve(const Csr& R, const float* Y, std::size_t n_y, std::size_t f, const float* G,
           const Options& options, std::size_t threads, float* X);

// The data term plus the regularisation of X's rows:
//   implicit: Σ_u Σ_{all i} c_ui (p_ui − x_u·y_i)² + Σ_u reg_u ‖x_u‖²   (uses G = YᵀY)
//   explicit: Σ_u Σ_{observed i} (r_ui − x_u·y_i)² + Σ_u reg_u ‖x_u‖²
// reg_u here is without the prior term. Accumulated in float64.
double loss(const Csr& R, const float* X, const float* Y, std::size_t f, const float* G,
            const Options& options, std::size_t threads);

}  // namespace llmrec::als
