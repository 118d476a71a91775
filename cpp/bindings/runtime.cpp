// Bindings for the runtime: SIMD levels and threads.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "llmrec/simd.hpp"
#include "llmrec/thread_pool.hpp"
#include "common.hpp"

namespace py = pybind11;
using llmrec::simd::Level;

void register_runtime(py::module_& m) {
  // The caps the native entry points apply, read by the Python checks (one source).
  m.attr("MAX_THREADS") = llmrec::kMaxThreads;
  m.attr("MAX_PADDED_K") = llmrec::bindings::kMaxPaddedK;
  m.def("compiled_simd_levels", [] {
    std::vector<std::string> names;
    for (Level l : llmrec::simd::compiled_levels()) names.emplace_back(llmrec::simd::level_name(l));
    return names;
  }, "SIMD levels whose kernels are compiled into this build, lowest first.");
  m.def("supported_simd_levels", [] {
    std::vector<std::string> names;
    for (Level l : llmrec::simd::compiled_levels())
      if (llmrec::simd::is_supported(l)) names.emplace_back(llmrec::simd::level_name(l));
    return names;
  }, "Compiled SIMD levels that this CPU and OS can run, lowest first.");
  m.def("active_simd_level", [] { return std::string(llmrec::simd::level_name(llmrec::simd::active_level())); },
        "The SIMD level the kernels use now.");
  m.def("set_simd_level", [](const std::string& name) {
    Level level;
    if (!llmrec::simd::parse_level(name, &level))
      throw py::value_error("level must be 'scalar', 'avx2' or 'avx512', got '" + name + "'");
    llmrec::simd::set_active_level(level);
  }, py::arg("level"), "Switches every kernel to `level` (for tests and benchmarks).");
  m.def("_parallel_task_sum", [](std::size_t n_tasks, long num_threads, long fail_task) {
    // Exercises the pool from Python tests: sums task ids; task `fail_task` throws.
    if (n_tasks > (std::size_t{1} << 32)) throw py::value_error("n_tasks must be at most 2**32");
    std::atomic<std::size_t> sum{0};
    const std::size_t threads = llmrec::resolve_threads(num_threads);
    py::gil_scoped_release release;
    llmrec::parallel_for(n_tasks, threads, [&](std::size_t t) {
      if (static_cast<long>(t) == fail_task) throw std::runtime_error("task " + std::to_string(t) + " failed");
      sum += t;
    });
    return sum.load();
  }, py::arg("n_tasks"), py::arg("num_threads"), py::arg("fail_task") = -1);
  m.def("hardware_threads", &llmrec::hardware_threads, "Threads used when num_threads=0.");
}
