// Runtime SIMD dispatch: which instruction sets were compiled in, which the CPU and OS
// support, and which one the kernels use.
#pragma once

#include <string>
#include <vector>

namespace llmrec::simd {

// Ordered from least to most capable; a higher level implies every lower one.
enum class Level : int { scalar = 0, avx2 = 1, avx512 = 2 };

// What this CPU and OS can run (cpuid + xgetbv), whatever was compiled: probed once, the
// only place in the library that asks the CPU.
struct Capabilities {
  bool avx2 = false;    // AVX2 + FMA, with the YMM state saved by the OS
  bool avx512 = false;  // AVX-512 F, DQ, BW and VL, with the ZMM state saved by the OS
  bool vnni = false;    // AVX-512 VNNI (int8 dot products)
  bool f16c = false;    // half <-> float conversions
  bool bf16 = false;    // AVX-512 BF16
};
const Capabilities& cpu_capabilities();

// A feature a kernel may need beyond its level's instruction set.
enum class Feature : int { none = 0, vnni = 1, f16c = 2, bf16 = 3 };

// True when the CPU has `feature` and it has not been turned off (Feature::none: true).
bool feature_usable(Feature feature);

// Allows (the default) or forbids kernels that need `feature`: tests turn VNNI off to
// check the AVX2 sq8 kernel under the avx512 level too.
void set_feature_enabled(Feature feature, bool enabled);

const char* level_name(Level level);

// Parses "scalar", "avx2" or "avx512"; returns false for anything else.
bool parse_level(const std::string& name, Level* out);

// Levels whose kernels were compiled into this build, in ascending order.
std::vector<Level> compiled_levels();

// True when `level` was compiled and this CPU and OS can run it (cpuid + xgetbv).
bool is_supported(Level level);

// The highest supported level, capped by LLMREC_SIMD when it is set.
Level default_level();

// The level the kernels use now. Starts at default_level().
Level active_level();

// Switches the kernels to `level` (used by tests to run every compiled path).
// Throws std::invalid_argument when the level is not supported here.
void set_active_level(Level level);

}  // namespace llmrec::simd
