// Baseline sq8 and pq4 kernels: plain C++ for the generic target, the reference for the others.
#include <cmath>
#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {

void sq8_scan_scalar(const Sq8Job& job) {
  const std::size_t groups = job.groups, block_bytes = 64 * groups, qstride = 4 * groups;
  for (std::size_t b = 0; b < job.n_blocks; ++b) {
    const std::size_t slot0 = b * 16;
    if (slot0 >= job.n_items) break;
    const std::size_t lanes = job.n_items - slot0 < 16 ? job.n_items - slot0 : 16;
    const uint8_t* block = job.blocks + b * block_bytes;
    for (std::size_t q = 0; q < job.nq; ++q) {
      const int8_t* t = job.qcodes + q * qstride;
      int32_t acc[16] = {};
      for (std::size_t g = 0; g < groups; ++g)
        for (std::size_t lane = 0; lane < 16; ++lane)
          for (std::size_t j = 0; j < 4; ++j)
            acc[lane] += static_cast<int32_t>(static_cast<int8_t>(block[g * 64 + lane * 4 + j] ^ 0x80)) *
                         t[g * 4 + j];
      for (std::size_t lane = 0; lane < lanes; ++lane) {
        const std::size_t at = slot0 + lane;
        const float scale = job.item_scale ? job.qscale[q] * job.item_scale[at] : job.qscale[q];
        const float offset = job.item_base ? job.qoffset[q] + job.base_scores[q * job.base_stride + job.item_base[at]]
                                           : job.qoffset[q];
        const float score = std::fma(static_cast<float>(acc[lane]), scale, offset);
        if (score > job.thresholds[q]) {
          const std::size_t slot = slot0 + lane;
          job.on_hit(job.context, q, job.ids ? job.ids[slot] : job.first_id + static_cast<int64_t>(slot), score);
        }
      }
    }
  }
}

}  // namespace llmrec::quant::detail

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
