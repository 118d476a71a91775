// Baseline sq8 kernel: plain C++ for the generic target, the reference for the others.
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
