// The pq4 fast-scan loop shared by the scalar, AVX2 and AVX-512 files. Include inside
// their anonymous namespace after defining
//   constexpr std::size_t kQueriesPerPass;   queries scored per pass over a code block
//   template <std::size_t MQ> void pq4_block(block, luts, padded_m, floors, sums, bits)
// which scores one block of 32 items for MQ queries: for each query m whose floor is at
// most 65535, bits[m] gets the lanes whose uint16 sum is >= floors[m] and, when any,
// sums[m] all 32 sums in item order (bits[m] = 0 and sums[m] untouched otherwise).
// Everything up to the hits is integer; a float is computed only for a sum that passes.

// Blocks [c0, c1) for queries q.. in groups of MQ (advances q). Each group's tables and
// floors are set up once per chunk; a floor changes only when the query's hits raise it.
template <std::size_t MQ>
inline void pq4_scan_queries(const Pq4Job& job, std::size_t c0, std::size_t c1, std::size_t& q) {
  Pq4Reservoirs* const res = job.reservoirs;
  for (; q + MQ <= job.nq; q += MQ) {
    const uint8_t* luts[MQ];
    uint32_t floors[MQ];
    for (std::size_t m = 0; m < MQ; ++m) {
      luts[m] = job.luts + (q + m) * 16 * job.padded_m;
      floors[m] = res ? res->floors[q + m] : pq4_floor(job.thresholds[q + m], job.bias[q + m], job.inverse_scale[q + m]);
    }
    alignas(64) uint16_t sums[MQ][32];
    unsigned bits[MQ];
    for (std::size_t b = c0; b < c1; ++b) {
      pq4_block<MQ>(job.blocks + b * 16 * job.padded_m, luts, job.padded_m, floors, sums, bits);
      const std::size_t slot0 = b * 32;
      const unsigned valid = job.n_items - slot0 < 32 ? (1u << (job.n_items - slot0)) - 1u : ~0u;
      for (std::size_t m = 0; m < MQ; ++m) {
        unsigned hit = bits[m] & valid;
        if (!hit) continue;
        const std::size_t query = q + m;
        if (res) {
          // A push may compact the reservoir and raise its floor mid-block.
          for (; hit; hit &= hit - 1) {
            const unsigned lane = static_cast<unsigned>(__builtin_ctz(hit));
            if (sums[m][lane] >= res->floors[query]) pq4_push(*res, query, sums[m][lane], res->slot_base + static_cast<uint32_t>(slot0 + lane));
          }
          floors[m] = res->floors[query];
          continue;
        }
        const float scale = job.inverse_scale[query], bias = job.bias[query];
        for (; hit; hit &= hit - 1) {
          const unsigned lane = static_cast<unsigned>(__builtin_ctz(hit));
          const float score = pq4_score(sums[m][lane], scale, bias);
          if (!(score > job.thresholds[query])) continue;
          const std::size_t slot = slot0 + lane;
          job.on_hit(job.context, query, job.ids ? job.ids[slot] : job.first_id + static_cast<int64_t>(slot), score);
        }
        floors[m] = pq4_floor(job.thresholds[query], bias, scale);
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
    if (kQueriesPerPass > 1) pq4_scan_queries<1>(job, c0, c1, q);
  }
}
