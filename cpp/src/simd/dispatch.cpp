#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include "llmrec/simd.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define LLMREC_X86 1
#endif

namespace llmrec::simd {
namespace {

#ifdef LLMREC_X86
unsigned long long read_xcr0() {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

// What the CPU advertises and the OS has enabled (register state saved on switches).
Level detect_cpu_level() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Level::scalar;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12);
  if (!osxsave || !avx || !fma) return Level::scalar;
  const unsigned long long xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return Level::scalar;  // SSE and AVX state
  if (__get_cpuid_max(0, nullptr) < 7) return Level::scalar;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  if (!avx2) return Level::scalar;
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
                      (b & (1u << 31));  // F, DQ, BW, VL
  const bool zmm_state = (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  return avx512 && zmm_state ? Level::avx512 : Level::avx2;
}
#else
Level detect_cpu_level() { return Level::scalar; }
#endif

bool is_compiled(Level level) {
  switch (level) {
    case Level::scalar: return true;
#ifdef LLMREC_HAVE_AVX2
    case Level::avx2: return true;
#endif
#ifdef LLMREC_HAVE_AVX512
    case Level::avx512: return true;
#endif
    default: return false;
  }
}

Level best_supported() {
  static const Level cpu = detect_cpu_level();
  for (int l = static_cast<int>(cpu); l > 0; --l)
    if (is_compiled(static_cast<Level>(l))) return static_cast<Level>(l);
  return Level::scalar;
}

std::atomic<int>& active_storage() {
  static std::atomic<int> level{static_cast<int>(default_level())};
  return level;
}

}  // namespace

const char* level_name(Level level) {
  switch (level) {
    case Level::scalar: return "scalar";
    case Level::avx2: return "avx2";
    case Level::avx512: return "avx512";
  }
  return "unknown";
}

bool parse_level(const std::string& name, Level* out) {
  for (Level l : {Level::scalar, Level::avx2, Level::avx512}) {
    if (name == level_name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

std::vector<Level> compiled_levels() {
  std::vector<Level> levels;
  for (Level l : {Level::scalar, Level::avx2, Level::avx512})
    if (is_compiled(l)) levels.push_back(l);
  return levels;
}

bool is_supported(Level level) {
  return is_compiled(level) && static_cast<int>(level) <= static_cast<int>(best_supported());
}

Level default_level() {
  Level best = best_supported();
  const char* forced = std::getenv("LLMREC_SIMD");
  Level requested;
  if (forced && parse_level(forced, &requested) &&
      static_cast<int>(requested) < static_cast<int>(best) && is_compiled(requested))
    return requested;
  return best;
}

Level active_level() { return static_cast<Level>(active_storage().load(std::memory_order_relaxed)); }

void set_active_level(Level level) {
  if (!is_supported(level))
    throw std::invalid_argument(std::string("SIMD level '") + level_name(level) +
                                "' is not compiled in or not supported by this CPU");
  active_storage().store(static_cast<int>(level), std::memory_order_relaxed);
}

}  // namespace llmrec::simd
