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
// Throws std::invalid_argument when n < k or k == 0.
void train(const float* x, std::size_t n, std::size_t d, std::size_t k, std::size_t iterations,
           uint64_t seed, std::size_t num_threads, float* centroids, int32_t* assignment);

// Nearest centroid by L2 for each of n rows; `distances` (optional) receives the squared
// distances.
void assign(const float* x, std::size_t n, std::size_t d, const float* centroids, std::size_t k,
            std::size_t num_threads, int32_t* assignment, float* distances);

}  // namespace llmrec::kmeans
