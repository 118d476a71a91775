// The bound quantized-search view (facade: python/llmrec/quantized.py). A QuantizedView
// is built, and fully checked, once each time an index's storage changes; each search
// then checks only what the call brings (queries, k, filters, probes, rerank, threads).
//
// Numpy keeps owning the storage: the codes, per-slot scales and kept vectors are read
// where they are (memory-mapped files included), and the view holds references that keep
// those arrays alive. What the search indexes memory with (list layout, slot ids, base
// numbers) and the small codec parameters are copied once the checks have passed, so
// that writing into the caller's arrays afterwards cannot take a search outside memory.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "llmrec/quant.hpp"
#include "llmrec/thread_pool.hpp"
#include "quant_checks.hpp"

namespace py = pybind11;

namespace {

using llmrec::bindings::ByteArray;
using llmrec::bindings::checked_product;
using llmrec::bindings::FloatArray;
using llmrec::bindings::IdArray;
using llmrec::bindings::require;
using llmrec::quant::Codec;
using OptFloats = std::optional<FloatArray>;
using OptIds = std::optional<IdArray>;
using OptBytes = std::optional<ByteArray>;
using llmrec::bindings::HalfArray;

template <class T>
std::vector<T> copy_of(const llmrec::bindings::InputArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

class QuantizedView {
 public:
  QuantizedView(const std::string& codec, std::size_t n, std::size_t d, const py::array& codes, const OptFloats& mid,
                const OptFloats& step, const OptFloats& vectors, const OptFloats& centroids, const OptIds& list_starts,
                const OptIds& list_sizes, const OptIds& slot_ids, const OptFloats& codebooks,
                const OptFloats& item_scales, const std::optional<HalfArray>& item_bases, const OptFloats& bases)
      : codec_name_(codec) {
    require(codec == "sq8" || codec == "fp16" || codec == "pq4",
            "codec must be 'sq8', 'fp16' or 'pq4', got '" + codec + "'");
    require(d > 0, "d must be positive");
    view_.codec = codec == "sq8" ? Codec::sq8 : codec == "pq4" ? Codec::pq4 : Codec::fp16;
    view_.n = n;
    view_.d = d;
    view_.slots = n;
    if (centroids) set_lists(*centroids, list_starts, list_sizes, slot_ids);
    else require(!list_starts && !list_sizes && !slot_ids, "list starts, sizes and slot ids need centroids");
    switch (view_.codec) {
      case Codec::sq8: set_sq8(codes, mid, step, item_scales, item_bases, bases, centroids.has_value()); break;
      case Codec::fp16: set_fp16(codes); break;
      case Codec::pq4: set_pq4(codes, codebooks); break;
    }
    require(view_.codec == Codec::sq8 || (!item_scales && !item_bases && !bases),
            "item_scales, item_bases and bases are sq8 arrays");
    if (vectors) {
      require(vectors->ndim() == 2 && static_cast<std::size_t>(vectors->shape(0)) >= n &&
                  static_cast<std::size_t>(vectors->shape(1)) == d,
              "vectors must be (n, d)");
      vectors_ = *vectors;
      view_.vectors = vectors->data();
    }
  }

  py::tuple search(const FloatArray& queries, long k, const OptIds& exclude_indptr, const OptIds& exclude_ids,
                   const OptBytes& allow_mask, const OptIds& allow_ids, const OptBytes& deleted_mask, long probes,
                   long rerank, long num_threads) const {
    const std::size_t d = view_.d, n = view_.n;
    require(queries.ndim() == 2 && static_cast<std::size_t>(queries.shape(1)) == d,
            "queries must be 2-D with the index's dimension");
    const std::size_t k_out = llmrec::bindings::checked_k(k, n, "n");
    require(rerank >= 0, "rerank must be >= 0");
    require(probes >= 1, "probes must be >= 1");
    const std::size_t nq = queries.shape(0);
    llmrec::bindings::require_finite(queries.data(), nq * d, "queries");
    llmrec::bindings::require_bounded_rows(queries.data(), nq, d, "queries");
    std::vector<int64_t> sorted_exclusions;
    const llmrec::topk::Filter filter = llmrec::bindings::make_filter(
        n, nq, exclude_indptr, exclude_ids, allow_mask, allow_ids, sorted_exclusions, deleted_mask);
    llmrec::quant::IndexView view = view_;
    view.probes = static_cast<std::size_t>(probes);
    const std::size_t threads = llmrec::resolve_threads(num_threads);
    return llmrec::bindings::topk_result(nq, k_out, [&](int64_t* ids_out, float* scores_out) {
      llmrec::quant::search(view, queries.data(), nq, k_out, filter, static_cast<std::size_t>(rerank), threads,
                            ids_out, scores_out);
    });
  }

  const std::string& codec() const { return codec_name_; }
  std::size_t n() const { return view_.n; }
  std::size_t d() const { return view_.d; }
  std::size_t partitions() const { return view_.partitions; }

 private:
  // Items per block: list starts are multiples of it.
  std::size_t block() const {
    return view_.codec == Codec::sq8 ? llmrec::quant::kSq8Block : view_.codec == Codec::pq4 ? llmrec::quant::kPq4Block : 1;
  }

  void set_lists(const FloatArray& centroids, const OptIds& list_starts, const OptIds& list_sizes,
                 const OptIds& slot_ids) {
    const std::size_t d = view_.d, n = view_.n;
    require(list_starts && list_sizes && slot_ids, "partitions need list starts, sizes and slot ids");
    require(centroids.ndim() == 2 && static_cast<std::size_t>(centroids.shape(1)) == d && centroids.shape(0) > 0,
            "centroids must be (partitions, d)");
    const std::size_t p = centroids.shape(0);
    require(static_cast<std::size_t>(list_starts->size()) == p && static_cast<std::size_t>(list_sizes->size()) == p,
            "list starts and sizes need one entry per partition");
    require(slot_ids->ndim() == 1, "slot_ids must be 1-D");
    // Centroids are scored against bounded queries: bounded too, so list scores are finite.
    llmrec::bindings::require_bounded_rows(centroids.data(), p, d, "centroids");
    const std::size_t slots = slot_ids->size(), align = block();
    const int64_t* st = list_starts->data();
    const int64_t* sz = list_sizes->data();
    const int64_t* ids = slot_ids->data();
    std::size_t total = 0;
    bool lists_ok = true;
    for (std::size_t j = 0; j < p; ++j) {
      // start <= slots and size <= slots - start: no int64 sum that could wrap.
      lists_ok &= st[j] >= 0 && sz[j] >= 0 && static_cast<std::size_t>(st[j]) <= slots &&
                  static_cast<std::size_t>(sz[j]) <= slots - static_cast<std::size_t>(st[j]) &&
                  static_cast<std::size_t>(st[j]) % align == 0;
      total += lists_ok ? static_cast<std::size_t>(sz[j]) : 0;
    }
    require(lists_ok, "list starts and sizes out of range (each list within the slots, starting on a block)");
    require(total == n, "lists must hold every item once");
    // Every slot inside a list holds an item id in [0, n), and no id twice (lists that
    // overlap read some slots twice): with total == n, each item is in exactly one list.
    std::vector<uint8_t> seen(n, 0);
    bool in_range = true, distinct = true;
    for (std::size_t j = 0; j < p; ++j)
      for (int64_t s = st[j]; s < st[j] + sz[j]; ++s) {
        const uint64_t id = static_cast<uint64_t>(ids[s]);  // negative ids wrap to huge values
        if (id >= n) {
          in_range = false;
          continue;
        }
        distinct &= !seen[id];
        seen[id] = 1;
      }
    require(in_range, "slot ids out of range: every slot of a list must hold an item id in [0, n)");
    require(distinct, "slot ids repeated: the lists hold an item id more than once");
    ranking_ = llmrec::quant::ListRanking(centroids.data(), list_sizes->data(), p, d);
    list_starts_ = copy_of(*list_starts);
    list_sizes_ = copy_of(*list_sizes);
    slot_ids_ = copy_of(*slot_ids);
    view_.partitions = p;
    view_.slots = slots;
    view_.ranking = &ranking_;
    view_.list_starts = list_starts_.data();
    view_.list_sizes = list_sizes_.data();
    view_.slot_ids = slot_ids_.data();
  }

  void set_sq8(const py::array& codes, const OptFloats& mid, const OptFloats& step, const OptFloats& item_scales,
               const std::optional<HalfArray>& item_bases, const OptFloats& bases, bool partitioned) {
    const std::size_t d = view_.d, slots = view_.slots;
    auto blocks = ByteArray::ensure(codes);
    require(blocks && blocks.ndim() == 2 && static_cast<std::size_t>(blocks.shape(1)) == llmrec::quant::sq8_block_bytes(d) &&
                slots <= checked_product(blocks.shape(0), llmrec::quant::kSq8Block, "codes") &&
                blocks.data() == static_cast<const uint8_t*>(codes.data()),
            "sq8 codes must be a C-contiguous uint8 array of at least sq8_blocks(n) blocks");
    require(mid && step && static_cast<std::size_t>(mid->size()) == d && static_cast<std::size_t>(step->size()) == d,
            "sq8 needs mid and step of d entries");
    llmrec::bindings::require_sq8_params(mid->data(), step->data(), d);
    codes_ = codes;
    mid_ = copy_of(*mid);
    step_ = copy_of(*step);
    view_.sq8_blocks = blocks.data();
    view_.sq8_mid = mid_.data();
    view_.sq8_step = step_.data();
    const std::size_t slot_room = llmrec::quant::sq8_blocks(slots) * llmrec::quant::kSq8Block;
    if (item_scales) {
      require(static_cast<std::size_t>(item_scales->size()) >= slot_room,
              "item_scales needs one entry per slot (whole blocks)");
      item_scales_ = *item_scales;
      view_.sq8_item_scales = item_scales->data();
    }
    require(item_bases.has_value() == bases.has_value(), "item_bases and bases go together");
    if (!bases) return;
    require(item_scales.has_value() && !partitioned, "bases apply to a flat residual sq8 index");
    require(bases->ndim() == 2 && static_cast<std::size_t>(bases->shape(1)) == d && bases->shape(0) > 0 &&
                bases->shape(0) <= 65536,
            "bases must be (n_bases <= 65536, d)");
    require(static_cast<std::size_t>(item_bases->size()) >= slot_room, "item_bases needs one entry per slot (whole blocks)");
    llmrec::bindings::require_bounded_rows(bases->data(), bases->shape(0), d, "bases");
    item_bases_.assign(item_bases->data(), item_bases->data() + slot_room);
    uint16_t largest = 0;  // (no slots at all: no base number to check)
    for (const uint16_t b : item_bases_) largest = std::max(largest, b);
    require(largest < static_cast<std::size_t>(bases->shape(0)), "item_bases out of range: each must be < n_bases");
    bases_ = copy_of(*bases);
    view_.sq8_item_bases = item_bases_.data();
    view_.sq8_bases = bases_.data();
    view_.sq8_n_bases = bases->shape(0);
  }

  void set_fp16(const py::array& codes) {
    require(codes.dtype().equal(py::dtype::of<uint16_t>()) && (codes.flags() & py::array::c_style) &&
                reinterpret_cast<std::uintptr_t>(codes.data()) % alignof(uint16_t) == 0 && codes.ndim() == 2 &&
                static_cast<std::size_t>(codes.shape(0)) >= view_.slots &&
                static_cast<std::size_t>(codes.shape(1)) == view_.d,
            "fp16 codes must be a C-contiguous, aligned uint16 (n, d) array");
    codes_ = codes;
    view_.fp16_rows = static_cast<const uint16_t*>(codes.data());
  }

  void set_pq4(const py::array& codes, const OptFloats& codebooks) {
    require(codebooks.has_value(), "pq4 needs codebooks");
    const std::size_t m = llmrec::bindings::pq4_m_of(*codebooks, view_.d);
    llmrec::bindings::require_bounded_codebooks(*codebooks, m, view_.d);
    auto blocks = ByteArray::ensure(codes);
    require(blocks && blocks.data() == static_cast<const uint8_t*>(codes.data()),
            "pq4 codes must be a C-contiguous uint8 array");
    require(view_.slots <= llmrec::bindings::pq4_capacity(blocks, m), "pq4 blocks array too small");
    codes_ = codes;
    codebooks_ = copy_of(*codebooks);
    view_.pq4_blocks = blocks.data();
    view_.pq4_codebooks = codebooks_.data();
    view_.pq4_m = m;
  }

  std::string codec_name_;
  py::object codes_, item_scales_, vectors_;  // the storage, read in place and kept alive
  std::vector<float> mid_, step_, codebooks_, bases_;
  llmrec::quant::ListRanking ranking_;  // the centroids of non-empty lists, packed once
  std::vector<int64_t> list_starts_, list_sizes_, slot_ids_;
  std::vector<uint16_t> item_bases_;
  llmrec::quant::IndexView view_;
};

}  // namespace

void register_quant_view(py::module_& m) {
  m.attr("SQ8_BLOCK") = llmrec::quant::kSq8Block;
  m.attr("PQ4_BLOCK") = llmrec::quant::kPq4Block;
  m.attr("SQ8_ZERO_BYTE") = 0x80;  // the stored byte of an sq8 level 0 (s + 128): empty slots
  py::class_<QuantizedView>(m, "QuantizedView",
                            "One quantized index's storage, checked once, searched many times.")
      .def(py::init<const std::string&, std::size_t, std::size_t, const py::array&, const OptFloats&,
                    const OptFloats&, const OptFloats&, const OptFloats&, const OptIds&, const OptIds&,
                    const OptIds&, const OptFloats&, const OptFloats&, const std::optional<HalfArray>&,
                    const OptFloats&>(),
           py::arg("codec"), py::arg("n"), py::arg("d"), py::arg("codes"), py::arg("mid") = py::none(),
           py::arg("step") = py::none(), py::arg("vectors") = py::none(), py::arg("centroids") = py::none(),
           py::arg("list_starts") = py::none(), py::arg("list_sizes") = py::none(),
           py::arg("slot_ids") = py::none(), py::arg("codebooks") = py::none(),
           py::arg("item_scales") = py::none(), py::arg("item_bases") = py::none(), py::arg("bases") = py::none(),
           "Checks the storage of n items of dimension d coded by 'sq8', 'fp16' or 'pq4' (with centroids: "
           "an inverted file of block-aligned lists whose slots hold each item id once) and keeps it for "
           "search; ValueError names what is wrong.")
      .def("search", &QuantizedView::search, py::arg("queries"), py::arg("k"), py::arg("exclude_indptr") = py::none(),
           py::arg("exclude_ids") = py::none(), py::arg("allow_mask") = py::none(), py::arg("allow_ids") = py::none(),
           py::arg("deleted_mask") = py::none(), py::arg("probes") = 1, py::arg("rerank") = 0,
           py::arg("num_threads") = 0,
           "Top-k by codec scores (over the `probes` best lists), optionally re-ranked exactly from the "
           "kept vectors (rerank * k candidates); k at most max(n, 1024). Items whose deleted_mask byte "
           "is non-zero are never returned.")
      .def_property_readonly("codec", &QuantizedView::codec)
      .def_property_readonly("n", &QuantizedView::n)
      .def_property_readonly("d", &QuantizedView::d)
      .def_property_readonly("partitions", &QuantizedView::partitions);
}
