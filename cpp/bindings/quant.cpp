// Bindings for quantized search (facade: python/llmrec/quantized.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <string>

#include "common.hpp"
#include "quant_checks.hpp"
#include "llmrec/kmeans.hpp"
#include "llmrec/quant.hpp"
#include "llmrec/thread_pool.hpp"

namespace py = pybind11;

namespace {

using llmrec::bindings::ByteArray;
using llmrec::bindings::FloatArray;
using llmrec::bindings::IdArray;
using llmrec::bindings::Int32Array;
using llmrec::bindings::make_filter;
using llmrec::bindings::checked_product;
using llmrec::bindings::output_array;
using llmrec::bindings::require;
using llmrec::bindings::require_bounded_rows;
using llmrec::bindings::require_finite;
using llmrec::bindings::topk_result;
using llmrec::bindings::require_sq8_params;
using llmrec::bindings::pq4_m_of;
using llmrec::bindings::require_bounded_codebooks;
using llmrec::bindings::pq4_capacity;
using llmrec::bindings::checked_slots;
using llmrec::bindings::slot_range_fits;

// Lloyd iterations beyond this are a mistake (or an attack) rather than a request: the
// clustering has long converged, and the call would not return for hours.
constexpr std::size_t kMaxIterations = 100000;

using llmrec::bindings::HalfArray;

py::tuple sq8_train(const FloatArray& x) {
  require(x.ndim() == 2 && x.shape(0) > 0 && x.shape(1) > 0, "training vectors must be a non-empty 2-D array");
  const std::size_t n = x.shape(0), d = x.shape(1);
  require_finite(x.data(), n * d, "training vectors");
  FloatArray mid(d), step(d);
  float* m = mid.mutable_data();
  float* s = step.mutable_data();
  {
    py::gil_scoped_release release;
    llmrec::quant::sq8_train(x.data(), n, d, m, s);
  }
  return py::make_tuple(mid, step);
}

void sq8_encode(const FloatArray& x, const FloatArray& mid, const FloatArray& step, const py::object& blocks_arg,
                std::size_t first_slot, long num_threads, const std::optional<IdArray>& slots,
                const std::optional<FloatArray>& bases, const std::optional<Int32Array>& base_of,
                const std::optional<py::object>& item_scales_arg) {
  auto blocks = output_array<uint8_t>(blocks_arg, "blocks");
  require(x.ndim() == 2, "vectors must be 2-D");
  const std::size_t n = x.shape(0), d = x.shape(1);
  require(d > 0, "vectors must have at least one column");
  require_finite(x.data(), n * d, "vectors");
  require(mid.ndim() == 1 && step.ndim() == 1 && static_cast<std::size_t>(mid.size()) == d &&
              static_cast<std::size_t>(step.size()) == d,
          "mid and step must have d entries");
  require_sq8_params(mid.data(), step.data(), d);
  require(blocks.ndim() == 2 && static_cast<std::size_t>(blocks.shape(1)) == llmrec::quant::sq8_block_bytes(d),
          "blocks must be (n_blocks, sq8_block_bytes(d))");
  const std::size_t capacity = checked_product(blocks.shape(0), llmrec::quant::kSq8Block, "blocks");
  const int64_t* slot_ptr = checked_slots(slots, n, first_slot, capacity, "16");
  require(bases.has_value() == base_of.has_value(), "bases and base_of go together");
  const float* base_ptr = nullptr;
  const int32_t* base_of_ptr = nullptr;
  if (bases) {
    require(item_scales_arg && !item_scales_arg->is_none(), "residual codes (bases) need item_scales");
    require(bases->ndim() == 2 && static_cast<std::size_t>(bases->shape(1)) == d && bases->shape(0) > 0,
            "bases must be (n_bases, d)");
    require(base_of->ndim() == 1 && static_cast<std::size_t>(base_of->size()) == n, "base_of must have one entry per row");
    require_finite(bases->data(), bases->size(), "bases");
    base_ptr = bases->data();
    base_of_ptr = base_of->data();
    bool in_range = true;
    for (std::size_t r = 0; r < n; ++r) in_range &= base_of_ptr[r] >= 0 && base_of_ptr[r] < bases->shape(0);
    require(in_range, "base_of out of range");
  }
  std::optional<FloatArray> item_scales;
  float* scale_ptr = nullptr;
  if (item_scales_arg && !item_scales_arg->is_none()) {
    item_scales = output_array<float>(*item_scales_arg, "item_scales");
    require(static_cast<std::size_t>(item_scales->size()) >= capacity,
            "item_scales needs one entry per slot of blocks");
    scale_ptr = item_scales->mutable_data();
  }
  uint8_t* out = blocks.mutable_data();
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  py::gil_scoped_release release;
  llmrec::quant::sq8_encode(x.data(), n, d, mid.data(), step.data(), out, first_slot, threads, slot_ptr,
                            base_ptr, base_of_ptr, scale_ptr);
}

FloatArray sq8_decode(const ByteArray& blocks, std::size_t first, std::size_t n, const FloatArray& mid,
                      const FloatArray& step, const std::optional<FloatArray>& item_scales) {
  const std::size_t d = mid.size();
  require(d > 0 && static_cast<std::size_t>(step.size()) == d, "mid and step must have d entries");
  require_sq8_params(mid.data(), step.data(), d);
  require(blocks.ndim() == 2 && static_cast<std::size_t>(blocks.shape(1)) == llmrec::quant::sq8_block_bytes(d),
          "blocks must be (n_blocks, sq8_block_bytes(d))");
  require(slot_range_fits(first, n, checked_product(blocks.shape(0), llmrec::quant::kSq8Block, "blocks")),
          "first + n exceeds the slots of blocks (16 per block)");
  require(!item_scales || slot_range_fits(first, n, item_scales->size()),
          "item_scales needs one entry per slot");
  checked_product(n, d, "n * d");
  FloatArray out({n, d});
  llmrec::quant::sq8_decode(blocks.data(), first, n, d, mid.data(), step.data(), out.mutable_data(),
                            item_scales ? item_scales->data() : nullptr);
  return out;
}

// Element-wise conversion of a whole array (any shape), GIL released.
template <class Out, class In, class Convert>
py::array_t<Out, py::array::c_style> convert_all(const llmrec::bindings::InputArray<In>& in,
                                                 Convert convert) {
  std::vector<py::ssize_t> shape(in.shape(), in.shape() + in.ndim());
  py::array_t<Out, py::array::c_style> out(shape);
  Out* o = out.mutable_data();
  const std::size_t count = in.size();
  py::gil_scoped_release release;
  convert(in.data(), count, o);
  return out;
}

HalfArray fp16_encode(const FloatArray& x) { return convert_all<uint16_t>(x, llmrec::quant::fp16_encode); }

FloatArray fp16_decode(const HalfArray& h) { return convert_all<float>(h, llmrec::quant::fp16_decode); }

FloatArray pq4_train(const FloatArray& x, std::size_t m, std::size_t iterations, uint64_t seed, long num_threads) {
  require(x.ndim() == 2 && x.shape(1) > 0, "training vectors must be a 2-D array");
  const std::size_t n = x.shape(0), d = x.shape(1);
  require(m > 0 && d % m == 0, "pq_subspaces must divide the dimension " + std::to_string(d) + ", got " +
                                   std::to_string(m));
  require(m <= 256, "pq_subspaces must be at most 256");
  require(iterations <= kMaxIterations, "iterations must be at most 100000");
  require_finite(x.data(), n * d, "training vectors");
  FloatArray codebooks({m, std::size_t{16}, d / m});
  float* c = codebooks.mutable_data();
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  py::gil_scoped_release release;
  llmrec::quant::pq4_train(x.data(), n, d, m, iterations, seed, threads, c);
  return codebooks;
}

void pq4_encode(const FloatArray& x, const FloatArray& codebooks, const py::object& blocks_arg, std::size_t first_slot,
                long num_threads, const std::optional<IdArray>& slots) {
  auto blocks = output_array<uint8_t>(blocks_arg, "blocks");
  require(x.ndim() == 2, "vectors must be 2-D");
  const std::size_t n = x.shape(0), d = x.shape(1), m = pq4_m_of(codebooks, d);
  require_finite(x.data(), n * d, "vectors");
  require_finite(codebooks.data(), codebooks.size(), "codebooks");
  const std::size_t capacity = pq4_capacity(blocks, m);
  const int64_t* slot_ptr = checked_slots(slots, n, first_slot, capacity, "32");
  uint8_t* out = blocks.mutable_data();
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  py::gil_scoped_release release;
  llmrec::quant::pq4_encode(x.data(), n, d, m, codebooks.data(), out, first_slot, threads, slot_ptr);
}

FloatArray pq4_decode(const ByteArray& blocks, const IdArray& slots, const FloatArray& codebooks) {
  require(codebooks.ndim() == 3, "codebooks must be (m, 16, d / m)");
  const std::size_t m = codebooks.shape(0), d = m * codebooks.shape(2), n = slots.size();
  pq4_m_of(codebooks, d);
  const std::size_t capacity = pq4_capacity(blocks, m);
  require(slots.ndim() == 1, "slots must be 1-D");
  checked_product(n, d, "n * d");
  FloatArray out({n, d});
  for (std::size_t r = 0; r < n; ++r) {
    const int64_t slot = slots.data()[r];
    require(slot >= 0 && static_cast<std::size_t>(slot) < capacity, "slots out of range");
    llmrec::quant::pq4_decode(blocks.data(), static_cast<std::size_t>(slot), 1, d, m, codebooks.data(),
                              out.mutable_data() + r * d);
  }
  return out;
}

py::tuple pq4_tables(const FloatArray& queries, const FloatArray& codebooks) {
  require(queries.ndim() == 2, "queries must be 2-D");
  const std::size_t nq = queries.shape(0), d = queries.shape(1), m = pq4_m_of(codebooks, d);
  // Bounded queries and centroids keep every dot product, table range and the scale
  // finite (see kMaxVectorNorm), so the table bytes mean something.
  require_bounded_rows(queries.data(), nq, d, "queries");
  require_bounded_codebooks(codebooks, m, d);
  py::array_t<uint8_t> luts({nq, llmrec::quant::pq4_padded(m), std::size_t{16}});
  FloatArray bias(nq), inverse_scale(nq);
  llmrec::quant::pq4_tables(queries.data(), nq, d, m, codebooks.data(), luts.mutable_data(), bias.mutable_data(),
                            inverse_scale.mutable_data());
  return py::make_tuple(luts, bias, inverse_scale);
}

py::tuple rerank_exact(const FloatArray& vectors, const FloatArray& queries, const IdArray& candidates, long k,
                       long num_threads) {
  require(vectors.ndim() == 2 && queries.ndim() == 2 && candidates.ndim() == 2, "arrays must be 2-D");
  const std::size_t n = vectors.shape(0), d = vectors.shape(1), nq = queries.shape(0);
  require(static_cast<std::size_t>(queries.shape(1)) == d && static_cast<std::size_t>(candidates.shape(0)) == nq,
          "shapes do not match");
  const std::size_t k_out = llmrec::bindings::checked_k(k, n, "n_items");
  require_bounded_rows(queries.data(), nq, d, "queries");
  // The rows scored must be bounded too, or scores become inf or NaN and NaN breaks the
  // ordering. Only the candidates' rows are read: the index's facades pass bounded
  // vectors, and this check costs as much as the scoring itself.
  const int64_t* ids = candidates.data();
  bool in_range = true, bounded = true;
  for (py::ssize_t i = 0; i < candidates.size(); ++i) {
    in_range &= ids[i] >= -1 && ids[i] < static_cast<int64_t>(n);
    if (ids[i] < 0 || ids[i] >= static_cast<int64_t>(n)) continue;
    const float* row = vectors.data() + static_cast<std::size_t>(ids[i]) * d;
    double sum = 0.0;
    for (std::size_t j = 0; j < d; ++j) sum += static_cast<double>(row[j]) * row[j];
    bounded &= sum <= llmrec::bindings::kMaxVectorNorm * llmrec::bindings::kMaxVectorNorm;
  }
  require(in_range, "candidate ids must be -1 or in [0, n_items)");
  require(bounded, "vectors: the candidates' rows must be finite with L2 norm at most 2**63 (~9.2e18), so "
                   "that scores are finite in float32");
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  return topk_result(nq, k_out, [&](int64_t* ids_out, float* scores_out) {
    llmrec::topk::RescoreTerm exact;
    exact.matrix = vectors.data();
    exact.d = d;
    exact.queries = queries.data();
    llmrec::topk::rescore(candidates.data(), nq, candidates.shape(1), n, &exact, 1, nullptr, k_out, threads,
                          ids_out, scores_out);
  });
}

py::tuple kmeans_train(const FloatArray& x, std::size_t k, std::size_t iterations, uint64_t seed, long num_threads) {
  require(x.ndim() == 2 && x.shape(1) > 0, "training vectors must be a 2-D array");
  const std::size_t n = x.shape(0), d = x.shape(1);
  require(k >= 1, "k-means needs at least one centroid (k >= 1)");
  require(iterations <= kMaxIterations, "iterations must be at most 100000");
  require(k <= n, "k-means needs at least as many training vectors (" + std::to_string(n) + ") as centroids (" +
                      std::to_string(k) + ")");
  require(k <= static_cast<std::size_t>(std::numeric_limits<int32_t>::max()), "k is too large");
  require_finite(x.data(), n * d, "training vectors");
  FloatArray centroids({k, d});
  py::array_t<int32_t> assignment(n);
  float* c = centroids.mutable_data();
  int32_t* a = assignment.mutable_data();
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  {
    py::gil_scoped_release release;
    llmrec::kmeans::train(x.data(), n, d, k, iterations, seed, threads, c, a);
  }
  return py::make_tuple(centroids, assignment);
}

py::array_t<int32_t> kmeans_assign(const FloatArray& x, const FloatArray& centroids, long num_threads) {
  require(x.ndim() == 2 && centroids.ndim() == 2 && x.shape(1) == centroids.shape(1) && centroids.shape(0) > 0,
          "x and centroids must be 2-D with the same dimension");
  const std::size_t n = x.shape(0), d = x.shape(1), k = centroids.shape(0);
  require(k <= static_cast<std::size_t>(std::numeric_limits<int32_t>::max()), "too many centroids");
  require_finite(x.data(), n * d, "x");
  require_finite(centroids.data(), k * d, "centroids");
  py::array_t<int32_t> assignment(n);
  int32_t* a = assignment.mutable_data();
  const std::size_t threads = llmrec::resolve_threads(num_threads);
  py::gil_scoped_release release;
  llmrec::kmeans::assign(x.data(), n, d, centroids.data(), k, threads, a, nullptr);
  return assignment;
}

// Slot pairs (src_slots[j] -> dst_slots[j]) within src_capacity and dst_capacity slots.
void check_slot_pairs(const IdArray& src_slots, const IdArray& dst_slots, std::size_t src_capacity,
                      std::size_t dst_capacity) {
  require(src_slots.ndim() == 1 && dst_slots.ndim() == 1 && src_slots.size() == dst_slots.size(),
          "src_slots and dst_slots must be 1-D of the same length");
  const int64_t* from = src_slots.data();
  const int64_t* to = dst_slots.data();
  bool in_range = true;
  for (py::ssize_t j = 0; j < src_slots.size(); ++j)
    in_range &= from[j] >= 0 && static_cast<std::size_t>(from[j]) < src_capacity && to[j] >= 0 &&
                static_cast<std::size_t>(to[j]) < dst_capacity;
  require(in_range, "slots out of range");
}

void sq8_copy_slots(const ByteArray& src, const IdArray& src_slots, const py::object& dst_arg, const IdArray& dst_slots,
                    std::size_t d) {
  auto dst = output_array<uint8_t>(dst_arg, "dst");
  require(d > 0 && src.ndim() == 2 && dst.ndim() == 2 &&
              static_cast<std::size_t>(src.shape(1)) == llmrec::quant::sq8_block_bytes(d) && src.shape(1) == dst.shape(1),
          "src and dst must be (n_blocks, sq8_block_bytes(d))");
  check_slot_pairs(src_slots, dst_slots, checked_product(src.shape(0), llmrec::quant::kSq8Block, "src"),
                   checked_product(dst.shape(0), llmrec::quant::kSq8Block, "dst"));
  llmrec::quant::sq8_copy_slots(src.data(), src_slots.data(), dst.mutable_data(), dst_slots.data(), src_slots.size(), d);
}

void pq4_copy_slots(const ByteArray& src, const IdArray& src_slots, const py::object& dst_arg, const IdArray& dst_slots,
                    std::size_t m) {
  auto dst = output_array<uint8_t>(dst_arg, "dst");
  require(m >= 1 && m <= 256, "m must be in [1, 256]");
  check_slot_pairs(src_slots, dst_slots, pq4_capacity(src, m), pq4_capacity(dst, m));
  llmrec::quant::pq4_copy_slots(src.data(), src_slots.data(), dst.mutable_data(), dst_slots.data(), src_slots.size(), m);
}

}  // namespace

void register_quant(py::module_& m) {
  m.def("sq8_block_bytes", &llmrec::quant::sq8_block_bytes, py::arg("d"), "Bytes of one block of 16 sq8 items.");
  m.def("sq8_train", &sq8_train, py::arg("x"), "Per-dimension (mid, step) from training rows.");
  m.def("sq8_encode", &sq8_encode, py::arg("x"), py::arg("mid"), py::arg("step"), py::arg("blocks"),
        py::arg("first_slot"), py::arg("num_threads") = 0, py::arg("slots") = py::none(),
        py::arg("bases") = py::none(), py::arg("base_of") = py::none(), py::arg("item_scales") = py::none(),
        "Encodes rows into slots of a blocks array in place (slots first_slot.. or the given slots); "
        "with item_scales, residuals from bases[base_of] with a per-item scale written per slot.");
  m.def("sq8_copy_slots", &sq8_copy_slots, py::arg("src"), py::arg("src_slots"), py::arg("dst"),
        py::arg("dst_slots"), py::arg("d"),
     "Copies sq8 codes between slots.");
  m.def("sq8_decode", &sq8_decode, py::arg("blocks"), py::arg("first"), py::arg("n"), py::arg("mid"),
        py::arg("step"), py::arg("item_scales") = py::none(),
        "Reconstructs rows first .. first + n from sq8 blocks (mid + a * s * step; residual bases not added).");
  m.def("fp16_encode", &fp16_encode, py::arg("x"), "float32 -> IEEE half bits (uint16), round to nearest even.");
  m.def("fp16_decode", &fp16_decode, py::arg("h"), "IEEE half bits (uint16) -> float32.");
  m.def("rerank_exact", &rerank_exact, py::arg("vectors"), py::arg("queries"), py::arg("candidates"),
        py::arg("k"), py::arg("num_threads") = 0, "Exact top-k among each query's candidate ids (-1 = none; a repeated id counts once); "
        "k at most max(n_items, 1024).");
  m.def("kmeans_train", &kmeans_train, py::arg("x"), py::arg("k"), py::arg("iterations") = 20,
        py::arg("seed") = 0, py::arg("num_threads") = 0,
        "Seeded Lloyd k-means; returns (centroids float32 (k, d), assignment int32 (n,)).");
  m.def("kmeans_assign", &kmeans_assign, py::arg("x"), py::arg("centroids"), py::arg("num_threads") = 0,
        "Nearest centroid (L2) of each row, int32.");
  m.def("sq8_kernel", [] { return std::string(llmrec::quant::sq8_kernel_name()); },
        "The sq8 kernel the active SIMD level uses.");
  m.def("set_vnni_enabled", &llmrec::quant::set_vnni_enabled, py::arg("enabled"),
        "Allow (default) or forbid the AVX-512 VNNI sq8 kernel.");
  m.def("pq4_block_bytes", &llmrec::quant::pq4_block_bytes, py::arg("m"), "Bytes of one block of 32 pq4 items.");
  m.def("pq4_train", &pq4_train, py::arg("x"), py::arg("m"), py::arg("iterations") = 20, py::arg("seed") = 0,
        py::arg("num_threads") = 0, "Codebooks (m, 16, d / m) by seeded k-means per subspace.");
  m.def("pq4_encode", &pq4_encode, py::arg("x"), py::arg("codebooks"), py::arg("blocks"), py::arg("first_slot"),
        py::arg("num_threads") = 0, py::arg("slots") = py::none(), "Encodes rows into pq4 blocks in place.");
  m.def("pq4_decode", &pq4_decode, py::arg("blocks"), py::arg("slots"), py::arg("codebooks"),
        "Reconstructs the rows stored in the given slots.");
  m.def("pq4_tables", &pq4_tables, py::arg("queries"), py::arg("codebooks"),
        "Per-query uint8 lookup tables (nq, padded m, 16), bias and inverse scale.");
  m.def("pq4_copy_slots", &pq4_copy_slots, py::arg("src"), py::arg("src_slots"), py::arg("dst"),
        py::arg("dst_slots"), py::arg("m"),
     "Copies pq4 codes between slots.");
  m.def("pq4_kernel", [] { return std::string(llmrec::quant::pq4_kernel_name()); },
        "The pq4 kernel the active SIMD level uses.");
  m.def("vnni_supported", &llmrec::quant::vnni_supported, "Whether the VNNI sq8 kernel is compiled and usable.");
}
