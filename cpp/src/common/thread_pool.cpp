#include "llmrec/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace llmrec {
namespace {

// One parallel_for call: tasks are claimed by an atomic counter, so the caller and any
// number of workers can share it without further locking.
struct Job {
  const std::function<void(std::size_t)>* fn;
  std::size_t n_tasks;
  std::size_t max_helpers;       // workers allowed besides the caller
  std::size_t helpers = 0;       // guarded by the pool mutex
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> finished{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;      // first error, guarded by error_mutex
  std::mutex error_mutex;
  std::mutex done_mutex;
  std::condition_variable done_cv;

  void run_tasks() {
    for (std::size_t t; (t = next.fetch_add(1)) < n_tasks;) {
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*fn)(t);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
          failed = true;
        }
      }
      if (finished.fetch_add(1) + 1 == n_tasks) {
        std::lock_guard<std::mutex> lock(done_mutex);
        done_cv.notify_all();
      }
    }
  }
  bool has_unclaimed() const { return next.load() < n_tasks; }
};

class Pool {
 public:
  explicit Pool(std::size_t n_workers) {
    for (std::size_t i = 0; i < n_workers; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  void run(std::size_t n_tasks, std::size_t max_threads,
           const std::function<void(std::size_t)>& fn) {
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n_tasks = n_tasks;
    job->max_helpers = std::min(max_threads - 1, n_tasks - 1);
    if (job->max_helpers > 0 && !workers_.empty()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(job);
      }
      if (job->max_helpers == 1) cv_.notify_one(); else cv_.notify_all();
    }
    job->run_tasks();
    {
      std::unique_lock<std::mutex> lock(job->done_mutex);
      job->done_cv.wait(lock, [&] { return job->finished.load() == n_tasks; });
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void work() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        // Drop jobs whose tasks are all claimed or that have all the helpers they may use.
        while (!queue_.empty() && (!queue_.front()->has_unclaimed() ||
                                   queue_.front()->helpers >= queue_.front()->max_helpers))
          queue_.pop_front();
        if (queue_.empty()) continue;
        job = queue_.front();
        ++job->helpers;
      }
      job->run_tasks();
    }
  }

  std::vector<std::thread> workers_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
};

Pool& global_pool() {
  // Leaked on purpose: joining threads during static destruction at interpreter exit
  // can deadlock, and the OS reclaims them anyway.
  static Pool* pool = new Pool(hardware_threads() - 1);
  return *pool;
}

}  // namespace

std::size_t hardware_threads() {
  static const std::size_t n = std::max(1u, std::thread::hardware_concurrency());
  return n;
}

std::size_t resolve_threads(long num_threads) {
  if (num_threads < 0) throw std::invalid_argument("num_threads must be >= 0 (0 means all cores)");
  if (num_threads == 0) return std::min(hardware_threads(), kMaxThreads);
  return std::min(static_cast<std::size_t>(num_threads), kMaxThreads);
}

void parallel_for(std::size_t n_tasks, std::size_t max_threads,
                  const std::function<void(std::size_t)>& fn) {
  if (n_tasks == 0) return;
  max_threads = std::max<std::size_t>(1, std::min({max_threads, hardware_threads(), kMaxThreads}));
  if (max_threads == 1 || n_tasks == 1) {
    for (std::size_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  global_pool().run(n_tasks, max_threads, fn);
}

}  // namespace llmrec
