#include "llmrec/kmeans.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "llmrec/thread_pool.hpp"
#include "llmrec/topk.hpp"

namespace llmrec::kmeans {
namespace {

// Data whose largest magnitude lies outside [2^-30, 2^30] is clustered after scaling by a
// power of two: squared distances of larger values overflow float32 (1e19 squared is
// inf, and an all-inf row has no nearest centroid), and those of smaller ones underflow
// to 0 (every centroid ties). A power-of-two scale is exact and float rounding is
// invariant under it, so the clustering of scaled data is that of the data itself.
constexpr int kLowExponent = -30, kHighExponent = 30;

// Largest |value| of `count` floats; throws for NaN or inf.
float max_abs(const float* values, std::size_t count, const char* what) {
  float largest = 0.f;
  bool finite = true;
  for (std::size_t i = 0; i < count; ++i) {
    finite &= std::isfinite(values[i]);
    largest = std::max(largest, std::fabs(values[i]));
  }
  if (!finite) throw std::invalid_argument(std::string(what) + " contains NaN or infinite values");
  return largest;
}

// The power of two that brings `largest` into [1, 2), or 1 when it is already in range.
float range_scale(float largest) {
  if (largest == 0.f) return 1.f;
  const int e = std::ilogb(largest);
  return e < kLowExponent || e > kHighExponent ? std::ldexp(1.f, -e) : 1.f;
}

std::vector<float> scaled_copy(const float* values, std::size_t count, float scale) {
  std::vector<float> out(values, values + count);
  for (float& v : out) v *= scale;
  return out;
}

// Nearest centroid of one row by direct distances in double, NaN never preferred: the
// fallback for a row the inner-product search could not place (it must never give -1).
int32_t nearest_direct(const float* row, std::size_t d, const float* centroids, std::size_t k, double* distance) {
  double best = std::numeric_limits<double>::infinity();
  int32_t arg = 0;
  for (std::size_t c = 0; c < k; ++c) {
    double dist = 0.0;
    for (std::size_t i = 0; i < d; ++i) {
      const double diff = static_cast<double>(row[i]) - centroids[c * d + i];
      dist += diff * diff;
    }
    if (dist < best) best = dist, arg = static_cast<int32_t>(c);
  }
  if (distance) *distance = best;
  return arg;
}

void assign_in_range(const float* x, std::size_t n, std::size_t d, const float* centroids, std::size_t k,
                     std::size_t num_threads, int32_t* assignment, float* distances);

}  // namespace

void assign(const float* x, std::size_t n, std::size_t d, const float* centroids, std::size_t k,
            std::size_t num_threads, int32_t* assignment, float* distances) {
  if (n == 0) return;
  if (k == 0) throw std::invalid_argument("k must be positive");
  if (k > static_cast<std::size_t>(std::numeric_limits<int32_t>::max()))
    throw std::invalid_argument("k-means: too many centroids");
  const float largest = std::max(max_abs(x, n * d, "k-means input"), max_abs(centroids, k * d, "centroids"));
  const float scale = range_scale(largest);
  if (scale == 1.f) {
    assign_in_range(x, n, d, centroids, k, num_threads, assignment, distances);
    return;
  }
  const std::vector<float> xs = scaled_copy(x, n * d, scale), cs = scaled_copy(centroids, k * d, scale);
  assign_in_range(xs.data(), n, d, cs.data(), k, num_threads, assignment, distances);
  if (distances)
    for (std::size_t r = 0; r < n; ++r) distances[r] = static_cast<float>(distances[r] / (double(scale) * scale));
}

namespace {

void assign_in_range(const float* x, std::size_t n, std::size_t d, const float* centroids, std::size_t k,
                     std::size_t num_threads, int32_t* assignment, float* distances) {
  if (d <= 16 && k <= 256) {
    // Small problems (product-quantization subspaces): direct distances, no search setup.
    const std::size_t chunk = 4096;
    parallel_for((n + chunk - 1) / chunk, std::max<std::size_t>(1, num_threads), [&](std::size_t t) {
      for (std::size_t r = t * chunk; r < std::min(n, (t + 1) * chunk); ++r) {
        const float* row = x + r * d;
        float best = std::numeric_limits<float>::infinity();
        int32_t arg = 0;
        for (std::size_t c = 0; c < k; ++c) {
          float dist = 0.f;
          for (std::size_t i = 0; i < d; ++i) {
            const float diff = row[i] - centroids[c * d + i];
            dist += diff * diff;
          }
          if (dist < best) best = dist, arg = static_cast<int32_t>(c);
        }
        assignment[r] = arg;
        if (distances) distances[r] = best;
      }
    });
    return;
  }
  // argmin |x - c|^2 = argmax x.c - |c|^2 / 2: an inner-product top-1 over augmented rows.
  const std::size_t da = d + 1;
  std::vector<float> augmented_centroids(k * da);
  for (std::size_t c = 0; c < k; ++c) {
    double norm = 0.0;
    for (std::size_t i = 0; i < d; ++i) {
      augmented_centroids[c * da + i] = centroids[c * d + i];
      norm += static_cast<double>(centroids[c * d + i]) * centroids[c * d + i];
    }
    augmented_centroids[c * da + d] = static_cast<float>(-0.5 * norm);
  }
  const std::size_t chunk = 16384;
  std::vector<float> rows;
  std::vector<int64_t> ids;
  std::vector<float> scores;
  for (std::size_t r0 = 0; r0 < n; r0 += chunk) {
    const std::size_t m = std::min(chunk, n - r0);
    rows.resize(m * da);
    ids.resize(m);
    scores.resize(m);
    for (std::size_t r = 0; r < m; ++r) {
      std::copy(x + (r0 + r) * d, x + (r0 + r + 1) * d, rows.begin() + r * da);
      rows[r * da + d] = 1.f;
    }
    topk::search(augmented_centroids.data(), k, da, rows.data(), m, 1, topk::Filter{}, false, num_threads,
                 ids.data(), scores.data());
    for (std::size_t r = 0; r < m; ++r) {
      if (ids[r] < 0) {  // no finite score (cannot happen for in-range input): place it directly
        double distance;
        assignment[r0 + r] = nearest_direct(x + (r0 + r) * d, d, centroids, k, &distance);
        if (distances) distances[r0 + r] = static_cast<float>(distance);
        continue;
      }
      assignment[r0 + r] = static_cast<int32_t>(ids[r]);
      if (distances) {
        double norm = 0.0;
        for (std::size_t i = 0; i < d; ++i) norm += static_cast<double>(x[(r0 + r) * d + i]) * x[(r0 + r) * d + i];
        distances[r0 + r] = static_cast<float>(std::max(0.0, norm - 2.0 * scores[r]));
      }
    }
  }
}

}  // namespace

void train(const float* x, std::size_t n, std::size_t d, std::size_t k, std::size_t iterations,
           uint64_t seed, std::size_t num_threads, float* centroids, int32_t* assignment) {
  if (k == 0) throw std::invalid_argument("k-means needs at least one centroid");
  if (n < k)
    throw std::invalid_argument("k-means needs at least as many training vectors (" + std::to_string(n) +
                                ") as centroids (" + std::to_string(k) + ")");
  if (k > static_cast<std::size_t>(std::numeric_limits<int32_t>::max()))
    throw std::invalid_argument("k-means: too many centroids");
  const float scale = range_scale(max_abs(x, n * d, "k-means input"));
  if (scale != 1.f) {
    const std::vector<float> scaled = scaled_copy(x, n * d, scale);
    train(scaled.data(), n, d, k, iterations, seed, num_threads, centroids, assignment);
    for (std::size_t i = 0; i < k * d; ++i) centroids[i] /= scale;
    return;
  }
  std::mt19937_64 rng(seed);
  {
    // k distinct rows: a partial Fisher-Yates shuffle of the row indices.
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    for (std::size_t c = 0; c < k; ++c) {
      std::uniform_int_distribution<std::size_t> pick(c, n - 1);
      std::swap(order[c], order[pick(rng)]);
      std::copy(x + order[c] * d, x + (order[c] + 1) * d, centroids + c * d);
    }
  }
  std::vector<int32_t> owned;
  if (!assignment) {
    owned.resize(n);
    assignment = owned.data();
  }
  std::vector<std::size_t> counts(k), starts(k + 1), members(n);
  for (std::size_t it = 0; it < iterations; ++it) {
    assign(x, n, d, centroids, k, num_threads, assignment, nullptr);
    // Rows grouped by cluster in row order (a counting sort), then each cluster's mean is
    // summed sequentially: deterministic whatever the thread count.
    std::fill(counts.begin(), counts.end(), 0);
    for (std::size_t r = 0; r < n; ++r) ++counts[assignment[r]];
    starts[0] = 0;
    for (std::size_t c = 0; c < k; ++c) starts[c + 1] = starts[c] + counts[c];
    {
      std::vector<std::size_t> next(starts.begin(), starts.end() - 1);
      for (std::size_t r = 0; r < n; ++r) members[next[assignment[r]]++] = r;
    }
    const std::size_t per_task = std::max<std::size_t>(1, k / (8 * std::max<std::size_t>(1, num_threads)));
    parallel_for((k + per_task - 1) / per_task, num_threads, [&](std::size_t t) {
      std::vector<double> sum(d);
      for (std::size_t c = t * per_task; c < std::min(k, (t + 1) * per_task); ++c) {
        if (counts[c] == 0) continue;
        std::fill(sum.begin(), sum.end(), 0.0);
        for (std::size_t j = starts[c]; j < starts[c + 1]; ++j) {
          const float* row = x + members[j] * d;
          for (std::size_t i = 0; i < d; ++i) sum[i] += row[i];
        }
        for (std::size_t i = 0; i < d; ++i) centroids[c * d + i] = static_cast<float>(sum[i] / counts[c]);
      }
    });
    // Empty clusters split the largest one.
    for (std::size_t c = 0; c < k; ++c) {
      if (counts[c] != 0) continue;
      const std::size_t big = static_cast<std::size_t>(std::max_element(counts.begin(), counts.end()) - counts.begin());
      for (std::size_t i = 0; i < d; ++i) {
        const float v = centroids[big * d + i];
        const float eps = (i % 2 ? 1.f : -1.f) * (std::fabs(v) * 1e-4f + 1e-7f);
        centroids[c * d + i] = v + eps;
        centroids[big * d + i] = v - eps;
      }
      counts[c] = counts[big] / 2;
      counts[big] -= counts[c];
    }
  }
  assign(x, n, d, centroids, k, num_threads, assignment, nullptr);
}

}  // namespace llmrec::kmeans
