// Bindings for the runtime: SIMD levels and threads.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "llmrec/simd.hpp"
#include "llmrec/thread_pool.hpp"

namespace py = pybind11;
using llmrec::simd::Level;

void register_runtime(py::module_& m) {
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
  m.def("hardware_threads", &llmrec::hardware_threads, "Threads used when num_threads=0.");
}
