// Internal: how every area picks its kernels. Each area lists its variants in one table,
// from the scalar baseline up, and `select` returns the most capable one that the active
// SIMD level (and the CPU's extra features) allow. Entries for instruction sets that this
// build does not compile are left out of the table by the LLMREC_IF_* macros, so adding
// an instruction set touches one table per area (plus CMake), never a hand-written switch.
#pragma once

#include <cstddef>

#include "llmrec/simd.hpp"

#ifdef LLMREC_HAVE_AVX2
#define LLMREC_IF_AVX2(...) __VA_ARGS__,
#else
#define LLMREC_IF_AVX2(...)
#endif
#ifdef LLMREC_HAVE_AVX512
#define LLMREC_IF_AVX512(...) __VA_ARGS__,
#else
#define LLMREC_IF_AVX512(...)
#endif
#ifdef LLMREC_HAVE_AVX512VNNI
#define LLMREC_IF_AVX512VNNI(...) __VA_ARGS__,
#else
#define LLMREC_IF_AVX512VNNI(...)
#endif

namespace llmrec::simd {

// One way to run an area's work: usable from `level` up, where `needs` is usable too.
template <class Kernels>
struct Variant {
  Level level;
  const char* name;
  Kernels kernels;
  Feature needs = Feature::none;
};

// The last variant (the table runs from least to most capable, the scalar one first)
// whose level is at most the active one and whose extra feature is usable.
template <class Kernels, std::size_t N>
const Variant<Kernels>& select(const Variant<Kernels> (&variants)[N]) {
  static_assert(N >= 1, "a kernel table starts with its scalar variant");
  const int active = static_cast<int>(active_level());
  for (std::size_t i = N - 1; i > 0; --i)
    if (static_cast<int>(variants[i].level) <= active && feature_usable(variants[i].needs)) return variants[i];
  return variants[0];
}

}  // namespace llmrec::simd
