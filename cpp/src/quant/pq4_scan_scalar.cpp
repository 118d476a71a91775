// Baseline pq4 fast-scan kernel: plain C++ for the generic target, the reference for the others.
#include <cmath>
#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

constexpr std::size_t kQueriesPerPass = 1;

// The reference pq4 block: plain table sums in item order, each compared with the floor.
template <std::size_t MQ>
inline void pq4_block(const uint8_t* block, const uint8_t* const* luts, std::size_t padded_m, const uint32_t* floors,
                      uint16_t (*sums)[32], unsigned* bits) {
  for (std::size_t m = 0; m < MQ; ++m) {
    uint32_t acc[32] = {};
    for (std::size_t s = 0; s < padded_m; ++s)
      for (std::size_t j = 0; j < 16; ++j) {
        const uint8_t byte = block[s * 16 + j];
        acc[j] += luts[m][s * 16 + (byte & 15)];
        acc[j + 16] += luts[m][s * 16 + (byte >> 4)];
      }
    unsigned found = 0;
    for (unsigned lane = 0; lane < 32; ++lane) {
      sums[m][lane] = static_cast<uint16_t>(acc[lane]);
      found |= static_cast<unsigned>(acc[lane] >= floors[m]) << lane;
    }
    bits[m] = found;
  }
}

#include "pq4_scan.inl"

}  // namespace

void pq4_scan_scalar(const Pq4Job& job) { pq4_scan_blocks(job); }

}  // namespace llmrec::quant::detail
