// The pq4 fast-scan loop shared by the AVX2 and AVX-512 files. Include inside their
// anonymous namespace after defining
//   constexpr std::size_t kQueriesPerPass;   queries scored per pass over a code block
//   template <std::size_t MQ> void pq4_block(block, luts, padded_m, inverse_scale, bias,
//                                            thresholds, floors, scores, bits)
// which scores one block of 32 items for MQ queries and flags the lanes above threshold;
// lanes whose uint16 sum is below floors[m] cannot pass, and a block where no lane
// reaches its floor may skip the float conversion. The including file includes <cmath>.

// A conservative integer bound: any sum below it scores at most the threshold, with a
// margin for the float rounding of fma(acc, inverse_scale, bias).
inline uint16_t pq4_floor(float threshold, float bias, float inverse_scale) {
  if (!(threshold > -INFINITY)) return 0;
  const double t = (static_cast<double>(threshold) - bias) / inverse_scale;
  const double margin = 2.0 + (std::fabs(threshold) + std::fabs(bias)) / inverse_scale * 1e-6;
  const double lo = std::floor(t - margin);
  if (!(lo > 0.0)) return 0;
  return lo >= 65535.0 ? uint16_t{65535} : static_cast<uint16_t>(lo);
}

// Blocks [c0, c1) for queries q.. in groups of MQ (advances q). Each group's tables and
// integer floors are set up once; a floor is recomputed only when its threshold rose.
template <std::size_t MQ>
inline void pq4_scan_queries(const Pq4Job& job, std::size_t c0, std::size_t c1, std::size_t& q) {
  for (; q + MQ <= job.nq; q += MQ) {
    const uint8_t* luts[MQ];
    uint16_t floors[MQ];
    float seen[MQ];
    for (std::size_t m = 0; m < MQ; ++m) {
      luts[m] = job.luts + (q + m) * 16 * job.padded_m;
      seen[m] = job.thresholds[q + m];
      floors[m] = pq4_floor(seen[m], job.bias[q + m], job.inverse_scale[q + m]);
    }
    alignas(64) float scores[MQ][32];
    unsigned bits[MQ];
    for (std::size_t b = c0; b < c1; ++b) {
      for (std::size_t m = 0; m < MQ; ++m)
        if (job.thresholds[q + m] != seen[m]) {
          seen[m] = job.thresholds[q + m];
          floors[m] = pq4_floor(seen[m], job.bias[q + m], job.inverse_scale[q + m]);
        }
      pq4_block<MQ>(job.blocks + b * 16 * job.padded_m, luts, job.padded_m, job.inverse_scale + q, job.bias + q,
                    job.thresholds + q, floors, scores, bits);
      const std::size_t slot0 = b * 32;
      const unsigned valid = job.n_items - slot0 < 32 ? (1u << (job.n_items - slot0)) - 1u : ~0u;
      for (std::size_t m = 0; m < MQ; ++m) {
        for (unsigned hit = bits[m] & valid; hit; hit &= hit - 1) {
          const std::size_t lane = static_cast<std::size_t>(__builtin_ctz(hit));
          if (!(scores[m][lane] > job.thresholds[q + m])) continue;
          const std::size_t slot = slot0 + lane;
          job.on_hit(job.context, q + m, job.ids ? job.ids[slot] : job.first_id + static_cast<int64_t>(slot),
                     scores[m][lane]);
        }
      }
    }
  }
}

// Blocks in chunks that stay in L2; kQueriesPerPass queries share each code load (their
// tables and sums held in registers), the remaining queries two or one at a time.
inline void pq4_scan_blocks(const Pq4Job& job) {
  const std::size_t block_bytes = 16 * job.padded_m;
  std::size_t chunk = 64 * 1024 / block_bytes;
  if (chunk == 0) chunk = 1;
  const std::size_t used_blocks = job.n_items ? (job.n_items + 31) / 32 : 0;
  const std::size_t n_blocks = job.n_blocks < used_blocks ? job.n_blocks : used_blocks;
  for (std::size_t c0 = 0; c0 < n_blocks; c0 += chunk) {
    const std::size_t c1 = c0 + chunk < n_blocks ? c0 + chunk : n_blocks;
    std::size_t q = 0;
    pq4_scan_queries<kQueriesPerPass>(job, c0, c1, q);
    if (kQueriesPerPass > 2) pq4_scan_queries<2>(job, c0, c1, q);
    pq4_scan_queries<1>(job, c0, c1, q);
  }
}
