// The ALS half-sweep, Gramian and loss: per-row systems built and solved with the
// active SIMD kernels, rows spread over the thread pool, per-thread scratch.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "../simd/select.hpp"
#include "kernels.hpp"
#include "llmrec/als.hpp"
#include "llmrec/thread_pool.hpp"

namespace llmrec::als {
namespace detail {

Kernels active_kernels() {
  static constexpr simd::Variant<Kernels> kVariants[] = {
      {simd::Level::scalar, "scalar",
       {dot_f32_scalar, gather_apply_f32_scalar, rank_update_f32_scalar, symv_f32_scalar, symv_rows_f32_scalar}},
      LLMREC_IF_AVX2({simd::Level::avx2, "avx2",
                      {dot_f32_avx2, gather_apply_f32_avx2, rank_update_f32_avx2, symv_f32_avx2,
                       symv_rows_f32_avx2}})
      LLMREC_IF_AVX512({simd::Level::avx512, "avx512",
                        {dot_f32_avx512, gather_apply_f32_avx512, rank_update_f32_avx512, symv_f32_avx512,
                         symv_rows_f32_avx512}})
  };
  return simd::select(kVariants).kernels;
}

}  // namespace detail

namespace {

using detail::Kernels;

// Rows are claimed by workers in small blocks (row lengths are skewed); the blocks and
// the Gramian/loss chunks have fixed sizes so that results never depend on threads.
constexpr std::size_t kRowsPerTask = 16;
constexpr std::size_t kGramianChunk = 2048;
constexpr std::size_t kLossChunk = 1024;

struct Scratch {
  std::vector<float> floats;
  std::vector<double> doubles;
};

Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}

float row_regularization(const Options& o, std::size_t n) {
  if (o.reg_exponent == 0.f) return o.regularization;
  return static_cast<float>(o.regularization * std::pow(static_cast<double>(n), o.reg_exponent));
}

void symv(const Kernels& k, const float* G, std::size_t f, const float* v, float* out) {
  k.symv(G, f, v, out);
}

// Solves A x = b in float64 by Cholesky, where A's upper triangle (row-major, float)
// holds the system; L (f × f doubles) and y (f doubles) are scratch. Pivots that are
// not positive (singular systems without regularisation) are clamped to a tiny value.
void cholesky_solve(const float* A, const float* b, std::size_t f, double* L, double* y,
                    float* x) {
  for (std::size_t i = 0; i < f; ++i)
    for (std::size_t j = 0; j <= i; ++j) L[i * f + j] = A[j * f + i];
  for (std::size_t j = 0; j < f; ++j) {
    double* Lj = L + j * f;
    double s = Lj[j];
    for (std::size_t k = 0; k < j; ++k) s -= Lj[k] * Lj[k];
    const double floor = 1e-12 * (std::fabs(static_cast<double>(A[j * f + j])) + 1e-30);
    const double pivot = std::sqrt(s > floor ? s : floor);
    Lj[j] = pivot;
    for (std::size_t i = j + 1; i < f; ++i) {
      double* Li = L + i * f;
      double t = Li[j];
      for (std::size_t k = 0; k < j; ++k) t -= Li[k] * Lj[k];
      Li[j] = t / pivot;
    }
  }
  for (std::size_t i = 0; i < f; ++i) {
    double t = b[i];
    const double* Li = L + i * f;
    for (std::size_t k = 0; k < i; ++k) t -= Li[k] * y[k];
    y[i] = t / Li[i];
  }
  for (std::size_t i = f; i-- > 0;) {
    double t = y[i];
    for (std::size_t k = i + 1; k < f; ++k) t -= L[k * f + i] * y[k];
    y[i] = t / L[i * f + i];
  }
  for (std::size_t i = 0; i < f; ++i) x[i] = static_cast<float>(y[i]);
}

// Rows whose CG iterations run in lockstep: each step applies G to all their search
// directions at once (symv_rows), so G is streamed through the cache once per group
// rather than once per row. Per row, the arithmetic is exactly that of a row solved alone.
constexpr std::size_t kGroupRows = 8;

struct RowSolver {
  const Csr& R;
  const float* Y;
  std::size_t f;
  const float* G;
  const Options& o;
  Kernels k;
  bool implicit;

  // The row's weights: c0 (constant coefficients of b), w (extra confidence, or unit
  // weights for explicit feedback) and neg_w = −w, each n long.
  void coefficients(const float* r, std::size_t n, float* c0, float* w, float* neg_w) const {
    for (std::size_t i = 0; i < n; ++i) {
      if (implicit) {
        w[i] = o.alpha * r[i];
        c0[i] = 1.f + w[i];
      } else {
        w[i] = 1.f;
        c0[i] = r[i];
      }
      neg_w[i] = -w[i];
    }
  }

  void cholesky(std::size_t u, float* x) const {
    const int64_t begin = R.indptr[u];
    const std::size_t n = static_cast<std::size_t>(R.indptr[u + 1] - begin);
    const float* prior = o.priors ? o.priors + u * f : nullptr;
    const int32_t* idx = R.indices + begin;
    const float strength = prior ? o.prior_strength : 0.f;
    const float reg = row_regularization(o, n) + strength;
    Scratch& s = thread_scratch();
    const std::size_t need = 3 * n + 2 * f + f * f;
    if (s.floats.size() < need) s.floats.resize(need);
    float* c0 = s.floats.data();
    float* w = c0 + n;
    float* res = w + 2 * n;
    float* A = res + f;
    coefficients(R.values + begin, n, c0, w, w + n);
    if (implicit && G) {
      std::memcpy(A, G, f * f * sizeof(float));
    } else {
      std::memset(A, 0, f * f * sizeof(float));
    }
    for (std::size_t j = 0; j < f; ++j) A[j * f + j] += reg;
    k.rank_update(Y, f, idx, n, w, A);
    k.gather_apply(Y, f, idx, n, c0, nullptr, nullptr, res);
    if (prior)
      for (std::size_t j = 0; j < f; ++j) res[j] += strength * prior[j];
    if (s.doubles.size() < f * f + f) s.doubles.resize(f * f + f);
    cholesky_solve(A, res, f, s.doubles.data(), s.doubles.data() + f * f, x);
  }

  // Rows [first, last) of X, at most kGroupRows of them, by conjugate gradient from the
  // current x: residual b − A x, then cg_steps steps (a row stops early when its
  // residual vanishes or its curvature is not positive).
  void conjugate_gradient(std::size_t first, std::size_t last, float* X) const {
    struct Row {
      std::size_t n;
      const int32_t* idx;
      const float* prior;
      float strength, reg, rs;
      float *x, *c0, *w, *neg_w, *res, *dir, *adir, *tmp;
    };
    Row rows[kGroupRows];
    std::size_t m = 0, entries = 0;
    for (std::size_t u = first; u < last; ++u) {
      const int64_t begin = R.indptr[u];
      const std::size_t n = static_cast<std::size_t>(R.indptr[u + 1] - begin);
      const float* prior = o.priors ? o.priors + u * f : nullptr;
      float* x = X + u * f;
      if (n == 0) {  // not fitted: the prior exactly, or zero
        for (std::size_t j = 0; j < f; ++j) x[j] = prior ? prior[j] : 0.f;
        continue;
      }
      const float strength = prior ? o.prior_strength : 0.f;
      rows[m++] = Row{n, R.indices + begin, prior, strength,
                      row_regularization(o, n) + strength, 0.f, x,
                      nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
      entries += n;
    }
    if (m == 0) return;

    Scratch& s = thread_scratch();
    const std::size_t need = 3 * entries + 4 * f * m;
    if (s.floats.size() < need) s.floats.resize(need);
    float* next = s.floats.data();
    for (std::size_t b = 0; b < m; ++b) {
      Row& row = rows[b];
      row.c0 = next;
      row.w = row.c0 + row.n;
      row.neg_w = row.w + row.n;
      row.res = row.neg_w + row.n;
      row.dir = row.res + f;
      row.adir = row.dir + f;
      row.tmp = row.adir + f;
      next = row.tmp + f;
      coefficients(R.values + (row.idx - R.indices), row.n, row.c0, row.w, row.neg_w);
    }

    const float* vs[kGroupRows];
    float* outs[kGroupRows];
    for (std::size_t b = 0; b < m; ++b) {
      Row& row = rows[b];
      k.gather_apply(Y, f, row.idx, row.n, row.c0, row.neg_w, row.x, row.res);
      vs[b] = row.x;
      outs[b] = row.tmp;
    }
    if (implicit && G) k.symv_rows(G, f, vs, m, outs);
    for (std::size_t b = 0; b < m; ++b) {
      Row& row = rows[b];
      float* res = row.res;
      if (implicit && G)
        for (std::size_t j = 0; j < f; ++j) res[j] -= row.tmp[j];
      for (std::size_t j = 0; j < f; ++j) res[j] -= row.reg * row.x[j];
      if (row.prior)
        for (std::size_t j = 0; j < f; ++j) res[j] += row.strength * row.prior[j];
      std::memcpy(row.dir, res, f * sizeof(float));
      row.rs = k.dot(res, res, f);
    }

    Row* active[kGroupRows];
    std::size_t n_active = m;
    for (std::size_t b = 0; b < m; ++b) active[b] = &rows[b];
    for (int step = 0; step < o.cg_steps; ++step) {
      std::size_t kept = 0;
      for (std::size_t b = 0; b < n_active; ++b)
        if (active[b]->rs > 1e-30f) active[kept++] = active[b];
      n_active = kept;
      if (n_active == 0) break;
      for (std::size_t b = 0; b < n_active; ++b) {
        Row& row = *active[b];
        k.gather_apply(Y, f, row.idx, row.n, nullptr, row.w, row.dir, row.adir);
        vs[b] = row.dir;
        outs[b] = row.tmp;
      }
      if (implicit && G) k.symv_rows(G, f, vs, n_active, outs);
      kept = 0;
      for (std::size_t b = 0; b < n_active; ++b) {
        Row& row = *active[b];
        float *x = row.x, *res = row.res, *dir = row.dir, *adir = row.adir;
        if (implicit && G)
          for (std::size_t j = 0; j < f; ++j) adir[j] += row.tmp[j];
        for (std::size_t j = 0; j < f; ++j) adir[j] += row.reg * dir[j];
        const float curvature = k.dot(dir, adir, f);
        if (!(curvature > 0.f)) continue;
        const float a = row.rs / curvature;
        for (std::size_t j = 0; j < f; ++j) {
          x[j] += a * dir[j];
          res[j] -= a * adir[j];
        }
        const float rs_next = k.dot(res, res, f);
        const float beta = rs_next / row.rs;
        for (std::size_t j = 0; j < f; ++j) dir[j] = res[j] + beta * dir[j];
        row.rs = rs_next;
        active[kept++] = &row;
      }
      n_active = kept;
    }
  }
};

void check_options(const Options& o, std::size_t f) {
  if (f == 0) throw std::invalid_argument("factors must be positive");
  if (o.cg_steps < 0) throw std::invalid_argument("cg_steps must be >= 0");
  if (!(o.regularization >= 0.f)) throw std::invalid_argument("regularization must be >= 0");
}

}  // namespace

void gramian(const float* Y, std::size_t n, std::size_t f, std::size_t threads, float* G) {
  const Kernels k = detail::active_kernels();
  const std::size_t n_chunks = (n + kGramianChunk - 1) / kGramianChunk;
  std::vector<float> partial(std::max<std::size_t>(n_chunks, 1) * f * f, 0.f);
  parallel_for(n_chunks, threads, [&](std::size_t c) {
    const std::size_t begin = c * kGramianChunk, end = std::min(n, begin + kGramianChunk);
    k.rank_update(Y + begin * f, f, nullptr, end - begin, nullptr, partial.data() + c * f * f);
  });
  for (std::size_t i = 0; i < f; ++i) {
    for (std::size_t j = i; j < f; ++j) {
      double s = 0.0;
      for (std::size_t c = 0; c < n_chunks; ++c) s += partial[c * f * f + i * f + j];
      G[i * f + j] = G[j * f + i] = static_cast<float>(s);
    }
  }
}

void solve(const Csr& R, const float* Y, std::size_t n_y, std::size_t f, const float* G,
           const Options& options, std::size_t threads, float* X) {
  check_options(options, f);
  const bool implicit = options.feedback == Feedback::implicit;
  if (implicit && !G) throw std::invalid_argument("implicit feedback needs the Gramian YᵀY");
  (void)n_y;
  const RowSolver rows{R, Y, f, G, options, detail::active_kernels(), implicit};
  const bool cholesky = options.solver == Solver::cholesky;
  const std::size_t n_tasks = (R.n_rows + kRowsPerTask - 1) / kRowsPerTask;
  parallel_for(n_tasks, threads, [&](std::size_t t) {
    const std::size_t end = std::min(R.n_rows, (t + 1) * kRowsPerTask);
    if (cholesky) {
      for (std::size_t u = t * kRowsPerTask; u < end; ++u) {
        if (R.indptr[u + 1] > R.indptr[u]) {
          rows.cholesky(u, X + u * f);
        } else {  // not fitted: the prior exactly, or zero
          for (std::size_t j = 0; j < f; ++j) X[u * f + j] = options.priors ? options.priors[u * f + j] : 0.f;
        }
      }
      return;
    }
    for (std::size_t u = t * kRowsPerTask; u < end; u += kGroupRows)
      rows.conjugate_gradient(u, std::min(end, u + kGroupRows), X);
  });
}

double loss(const Csr& R, const float* X, const float* Y, std::size_t f, const float* G,
            const Options& options, std::size_t threads) {
  check_options(options, f);
  const bool implicit = options.feedback == Feedback::implicit;
  if (implicit && !G) throw std::invalid_argument("implicit feedback needs the Gramian YᵀY");
  const Kernels k = detail::active_kernels();
  const std::size_t n_chunks = (R.n_rows + kLossChunk - 1) / kLossChunk;
  std::vector<double> partial(n_chunks, 0.0);
  parallel_for(n_chunks, threads, [&](std::size_t c) {
    Scratch& s = thread_scratch();
    if (s.floats.size() < f) s.floats.resize(f);
    float* gx = s.floats.data();
    double total = 0.0;
    const std::size_t end = std::min(R.n_rows, (c + 1) * kLossChunk);
    for (std::size_t u = c * kLossChunk; u < end; ++u) {
      const float* x = X + u * f;
      const std::size_t n = static_cast<std::size_t>(R.indptr[u + 1] - R.indptr[u]);
      double row = 0.0;
      if (implicit) {
        symv(k, G, f, x, gx);
        row += k.dot(x, gx, f);
      }
      for (int64_t e = R.indptr[u]; e < R.indptr[u + 1]; ++e) {
        const double score = k.dot(x, Y + static_cast<std::size_t>(R.indices[e]) * f, f);
        const double r = R.values[e];
        if (implicit) {
          const double c = 1.0 + options.alpha * r;
          row += c * (1.0 - score) * (1.0 - score) - score * score;
        } else {
          row += (r - score) * (r - score);
        }
      }
      row += static_cast<double>(row_regularization(options, n)) * k.dot(x, x, f);
      total += row;
    }
    partial[c] = total;
  });
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

}  // namespace llmrec::als
