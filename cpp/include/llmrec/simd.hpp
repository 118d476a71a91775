// Runtime SIMD dispatch: which instruction sets were compiled in, which the CPU and OS
// support, and which one the kernels use.
#pragma once

#include <string>
#include <vector>

namespace llmrec::simd {

// Ordered from least to most capable; a higher level implies every lower one.
enum class Level : int { scalar = 0, avx2 = 1, avx512 = 2 };

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
