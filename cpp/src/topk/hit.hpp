// Internal: how a scoring kernel reports a hit, shared by the exact and quantized kernels.
// Kept apart from driver.hpp so that files compiled for one ISA include no library code.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::topk::detail {

// Receives a score for (query, item) strictly above the query's running threshold; the
// receiver (filters and heap) may raise that threshold.
using HitFn = void (*)(void* context, std::size_t query, int64_t item, float score);

}  // namespace llmrec::topk::detail
