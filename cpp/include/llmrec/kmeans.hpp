// Seeded, multithreaded k-means (Lloyd) for coarse quantizers and codebooks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::kmeans {

// Clusters n rows of x (n x d) into k centroids (k x d, written to `centroids`).
// Initial centroids are k distinct rows drawn with `seed`; each iteration assigns every
// row to its nearest centroid by L2 (a SIMD inner-product search over rows augmented
// with -|c|^2 / 2) and moves each centroid to its rows' mean, summed in row order so
// the result does not depend on the thread count. An empty cluster takes half of the
// largest one (its centroid split by a small symmetric perturbation). With `assignment`
// (n entries), the final nearest-centroid index of every row is written there.
// Data whose largest magnitude is outside [2^-30, 2^30] is clustered scaled by a power of
// two (exact, and float rounding is invariant under it), so squared distances neither
// overflow nor underflow: the result is that of the data itself, and every assignment
// is a valid centroid index (never -1).
// Throws std::invalid_argument when n < k, k == 0, k > 2^31 - 1 or x holds NaN or inf.
void train(const float* x, std::size_t n, std::size_t d, std::size_t k, std::size_t iterations,
           uint64_t seed, std::size_t num_threads, float* centroids, int32_t* assignment);

// Nearest centroid by L2 for each of n rows, always in [0, k) (scaled as train is);
// `distances` (optional) receives the squared distances. Throws std::invalid_argument for
// NaN or inf in x or the centroids.
void assign(const float* x, std::size_t n, std::size_t d, const float* centroids, std::size_t k,
            std::size_t num_threads, int32_t* assignment, float* distances);

}  // namespace llmrec::kmeans
