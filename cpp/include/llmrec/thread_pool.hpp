// A process-wide pool of std::thread workers (no OpenMP: torch brings its own runtime).
#pragma once

#include <cstddef>
#include <functional>

namespace llmrec {

// Number of hardware threads; at least 1.
std::size_t hardware_threads();

// The most threads any call plans for. Thread counts size task grids and scratch
// (threads x tasks per thread x ...), so an absurd request such as 2**62 must not reach
// those products; 1024 is far above any core count this library targets and keeps every
// such product small. A larger request behaves as kMaxThreads.
inline constexpr std::size_t kMaxThreads = 1024;

// Maps a user's num_threads (0 = all cores, n > 0 = at most n) to a count in
// [1, kMaxThreads]. Throws std::invalid_argument for negative values.
std::size_t resolve_threads(long num_threads);

// Runs fn(task) for every task in [0, n_tasks) on at most `max_threads` threads, the
// calling thread included, and returns when all tasks are done. Safe to call from many
// threads at once and from inside a task. The first exception thrown by a task is
// rethrown in the caller after the remaining tasks have been skipped.
void parallel_for(std::size_t n_tasks, std::size_t max_threads,
                  const std::function<void(std::size_t)>& fn);

}  // namespace llmrec
