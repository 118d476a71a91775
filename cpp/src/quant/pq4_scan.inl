// The pq4 fast-scan loop shared by the AVX2 and AVX-512 files. Include inside their
// anonymous namespace after defining
//   template <std::size_t MQ> void pq4_block(block, luts, padded_m, inverse_scale, bias,
//                                            thresholds, scores, bits)
// which scores one block of 32 items for MQ queries and flags the lanes above threshold.

template <std::size_t MQ>
inline void pq4_tile(const Pq4Job& job, std::size_t b, std::size_t q0) {
  const std::size_t slot0 = b * 32;
  const uint8_t* luts[MQ];
  for (std::size_t m = 0; m < MQ; ++m) luts[m] = job.luts + (q0 + m) * 16 * job.padded_m;
  alignas(64) float scores[MQ][32];
  unsigned bits[MQ];
  pq4_block<MQ>(job.blocks + b * 16 * job.padded_m, luts, job.padded_m, job.inverse_scale + q0, job.bias + q0,
                job.thresholds + q0, scores, bits);
  const unsigned valid = job.n_items - slot0 < 32 ? (1u << (job.n_items - slot0)) - 1u : ~0u;
  for (std::size_t m = 0; m < MQ; ++m) {
    const std::size_t q = q0 + m;
    for (unsigned hit = bits[m] & valid; hit; hit &= hit - 1) {
      const std::size_t lane = static_cast<std::size_t>(__builtin_ctz(hit));
      if (!(scores[m][lane] > job.thresholds[q])) continue;
      const std::size_t slot = slot0 + lane;
      job.on_hit(job.context, q, job.ids ? job.ids[slot] : job.first_id + static_cast<int64_t>(slot),
                 scores[m][lane]);
    }
  }
}

// Blocks in chunks that stay in L2, two queries per code load where possible.
inline void pq4_scan_blocks(const Pq4Job& job) {
  const std::size_t block_bytes = 16 * job.padded_m;
  std::size_t chunk = 64 * 1024 / block_bytes;
  if (chunk == 0) chunk = 1;
  const std::size_t used_blocks = job.n_items ? (job.n_items + 31) / 32 : 0;
  const std::size_t n_blocks = job.n_blocks < used_blocks ? job.n_blocks : used_blocks;
  for (std::size_t c0 = 0; c0 < n_blocks; c0 += chunk) {
    const std::size_t c1 = c0 + chunk < n_blocks ? c0 + chunk : n_blocks;
    std::size_t q = 0;
    for (; q + 2 <= job.nq; q += 2)
      for (std::size_t b = c0; b < c1; ++b) pq4_tile<2>(job, b, q);
    for (; q < job.nq; ++q)
      for (std::size_t b = c0; b < c1; ++b) pq4_tile<1>(job, b, q);
  }
}
