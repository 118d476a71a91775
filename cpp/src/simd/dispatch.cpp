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
Capabilities probe() {
  Capabilities caps;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return caps;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29);
  if (!osxsave || !avx) return caps;
  const unsigned long long xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return caps;  // SSE and AVX state
  caps.f16c = f16c;
  if (__get_cpuid_max(0, nullptr) < 7) return caps;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_subleaf = a;
  caps.avx2 = fma && (b & (1u << 5));
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
                      (b & (1u << 31));  // F, DQ, BW, VL
  const bool zmm_state = (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  caps.avx512 = caps.avx2 && avx512 && zmm_state;
  caps.vnni = caps.avx512 && (c & (1u << 11));
  if (caps.avx512 && max_subleaf >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    caps.bf16 = a & (1u << 5);
  }
  return caps;
}
#else
Capabilities probe() { return {}; }
#endif

Level detect_cpu_level() {
  const Capabilities& caps = cpu_capabilities();
  return caps.avx512 ? Level::avx512 : caps.avx2 ? Level::avx2 : Level::scalar;
}

std::atomic<unsigned>& disabled_features() {
  static std::atomic<unsigned> bits{0};
  return bits;
}

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

const Capabilities& cpu_capabilities() {
  static const Capabilities caps = probe();
  return caps;
}

bool feature_usable(Feature feature) {
  const Capabilities& caps = cpu_capabilities();
  bool has = true;
  switch (feature) {
    case Feature::none: return true;
    case Feature::vnni: has = caps.vnni; break;
    case Feature::f16c: has = caps.f16c; break;
    case Feature::bf16: has = caps.bf16; break;
  }
  return has && !(disabled_features().load(std::memory_order_relaxed) & (1u << static_cast<int>(feature)));
}

void set_feature_enabled(Feature feature, bool enabled) {
  const unsigned bit = 1u << static_cast<int>(feature);
  if (enabled)
    disabled_features().fetch_and(~bit, std::memory_order_relaxed);
  else
    disabled_features().fetch_or(bit, std::memory_order_relaxed);
}

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
