// Checks shared by the quantized-search bindings (quant.cpp: codecs; quant_view.cpp: the
// bound search view): codec parameters, codebooks, code arrays and slot numbers.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>

#include "common.hpp"
#include "llmrec/quant.hpp"

namespace llmrec::bindings {

// The sq8 parameters the codecs multiply with and divide by: mid finite; step finite and
// either 0 (a constant dimension) or at least the smallest normal float, so that 1 / step
// is a finite float (a denormal step would turn codes and query levels into inf and NaN).
inline void require_sq8_params(const float* mid, const float* step, std::size_t d) {
  require_finite(mid, d, "mid");
  require_finite(step, d, "step");
  bool ok = true;
  for (std::size_t i = 0; i < d; ++i) ok &= step[i] == 0.f || step[i] >= std::numeric_limits<float>::min();
  require(ok, "step must be 0 or at least 1.1754944e-38 (the smallest normal float32) in every dimension, "
              "so that 1 / step is finite");
}

// The number of pq4 subspaces m of (m, 16, d / m) codebooks for dimension d.
inline std::size_t pq4_m_of(const FloatArray& codebooks, std::size_t d) {
  require(codebooks.ndim() == 3 && codebooks.shape(1) == 16 && codebooks.shape(0) > 0 && codebooks.shape(0) <= 256 &&
              d > 0 && static_cast<std::size_t>(codebooks.shape(0)) * static_cast<std::size_t>(codebooks.shape(2)) == d,
          "codebooks must be (m <= 256, 16, d / m)");
  return codebooks.shape(0);
}

// Every centroid finite with L2 norm <= kMaxVectorNorm, as item vectors and queries.
inline void require_bounded_codebooks(const FloatArray& codebooks, std::size_t m, std::size_t d) {
  require_bounded_rows(codebooks.data(), m * 16, d / m, "codebooks");
}

// The number of slots (32 per block) of a pq4 blocks array of the right width.
inline std::size_t pq4_capacity(const ByteArray& blocks, std::size_t m) {
  require(blocks.ndim() == 2 && static_cast<std::size_t>(blocks.shape(1)) == llmrec::quant::pq4_block_bytes(m),
          "pq4 blocks must be (n_blocks, pq4_block_bytes(m))");
  return checked_product(blocks.shape(0), llmrec::quant::kPq4Block, "blocks");
}

// True when slots first .. first + n lie within `capacity` slots (no wrap-around).
inline bool slot_range_fits(std::size_t first, std::size_t n, std::size_t capacity) {
  return first <= capacity && n <= capacity - first;
}

// The slots n encoded rows go to, checked against a codes array of `capacity` slots:
// the given slots (each in [0, capacity)), or null for first_slot .. first_slot + n.
// `per_block` names the codec's slots per block in the messages.
inline const int64_t* checked_slots(const std::optional<IdArray>& slots, std::size_t n, std::size_t first_slot,
                                    std::size_t capacity, const char* per_block) {
  if (!slots) {
    require(slot_range_fits(first_slot, n, capacity),
            std::string("first_slot + n exceeds the slots of blocks (") + per_block + " per block)");
    return nullptr;
  }
  require(slots->ndim() == 1 && static_cast<std::size_t>(slots->size()) == n, "slots must have one entry per row");
  const int64_t* s = slots->data();
  bool in_range = true;
  for (std::size_t r = 0; r < n; ++r) in_range &= s[r] >= 0 && static_cast<std::size_t>(s[r]) < capacity;
  require(in_range, std::string("slots out of range: each must be in [0, ") + per_block + " * n_blocks)");
  return s;
}

}  // namespace llmrec::bindings
