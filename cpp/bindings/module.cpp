// The one native module, llmrec._core. Each area registers its functions from its own file.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_runtime(py::module_& m);
void register_topk(py::module_& m);
void register_als(py::module_& m);
void register_quant(py::module_& m);
void register_quant_view(py::module_& m);
void register_diversity(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "llmrec's native core: SIMD kernels, thread pool, exact and quantized top-k search, ALS and MMR diversity.";
  register_runtime(m);
  register_topk(m);
  register_als(m);
  register_quant(m);
  register_quant_view(m);
  register_diversity(m);
}
