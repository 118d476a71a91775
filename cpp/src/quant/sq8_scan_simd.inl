// The sq8 block kernel shared by the SIMD translation units. Include inside an
// anonymous namespace after defining `Isa`:
//   static constexpr std::size_t W;   int32 lanes (items) per vector; 16 / W vectors a block
//   using V (int32 accumulators), C (one group of W items' codes, prepared), Q (a query's group)
//   V zero();  V load(const int32_t*);  void store(int32_t*, V)   (aligned)
//   C prep(const uint8_t* codes);  Q query(const int8_t* t, const uint8_t* abs_t);
//   V dot(V acc, C codes, Q query)             acc + per-lane sum of four s * t
//   V finish(V acc, int32_t qsum)              turns the kernel's sum into sum(s * t)
//   unsigned above(V acc, float scale, float offset, const float* item_scale,
//                  const uint16_t* item_base, const float* base_row, float threshold, float* scores)
//       with sc = scale (* item_scale[i] when given) and off = offset (+ base_row[item_base[i]]
//       when given): bit i set where fma(acc[i], sc, off) > threshold; scores written when any is
//
// A tile is MQ queries x NB blocks of accumulators; every group's codes are loaded once
// per tile and reused by all MQ queries, so many queries are compute bound on the
// multiply-adds and few queries read each code byte once.

inline std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

template <std::size_t MQ, std::size_t NB>
inline void sq8_tile(const Sq8Job& job, std::size_t b, std::size_t q0) {
  constexpr std::size_t VB = 16 / Isa::W, NV = NB * VB;
  const std::size_t groups = job.groups, block_bytes = 64 * groups, qstride = 4 * groups;
  typename Isa::V acc[MQ][NV];
  for (std::size_t m = 0; m < MQ; ++m)
    for (std::size_t v = 0; v < NV; ++v) acc[m][v] = Isa::zero();
  const uint8_t* base = job.blocks + b * block_bytes;
  const int8_t* qt = job.qcodes + q0 * qstride;
  const uint8_t* qa = job.qabs + q0 * qstride;
  for (std::size_t g = 0; g < groups; ++g) {
    typename Isa::C c[NV];
    for (std::size_t nb = 0; nb < NB; ++nb)
      for (std::size_t v = 0; v < VB; ++v)
        c[nb * VB + v] = Isa::prep(base + nb * block_bytes + g * 64 + v * Isa::W * 4);
    for (std::size_t m = 0; m < MQ; ++m) {
      const typename Isa::Q qv = Isa::query(qt + m * qstride + g * 4, qa + m * qstride + g * 4);
      for (std::size_t v = 0; v < NV; ++v) acc[m][v] = Isa::dot(acc[m][v], c[v], qv);
    }
  }
  // Spilled once here, so that the accumulators are indexed only by unrolled constants
  // above and stay in registers (the emission loop below calls out and is not unrolled).
  alignas(64) int32_t sums[MQ][NV][Isa::W];
  for (std::size_t m = 0; m < MQ; ++m)
    for (std::size_t v = 0; v < NV; ++v) Isa::store(sums[m][v], acc[m][v]);
  alignas(64) float scores[Isa::W];
  for (std::size_t m = 0; m < MQ; ++m) {
    const std::size_t q = q0 + m;
    const float scale = job.qscale[q], offset = job.qoffset[q];
    for (std::size_t v = 0; v < NV; ++v) {
      const std::size_t slot0 = b * 16 + v * Isa::W;
      if (slot0 >= job.n_items) break;
      const std::size_t lanes = min_size(Isa::W, job.n_items - slot0);
      unsigned bits = Isa::above(Isa::finish(Isa::load(sums[m][v]), job.qsums[q]), scale, offset,
                                 job.item_scale ? job.item_scale + slot0 : nullptr,
                                 job.item_base ? job.item_base + slot0 : nullptr,
                                 job.base_scores + q * job.base_stride, job.thresholds[q], scores);
      if (lanes < Isa::W) bits &= (1u << lanes) - 1u;
      for (; bits; bits &= bits - 1) {
        const std::size_t lane = static_cast<std::size_t>(__builtin_ctz(bits));
        if (!(scores[lane] > job.thresholds[q])) continue;
        const std::size_t slot = slot0 + lane;
        const int64_t id = job.ids ? job.ids[slot] : job.first_id + static_cast<int64_t>(slot);
        job.on_hit(job.context, q, id, scores[lane]);
      }
    }
  }
}

// Blocks in chunks that stay in L2 while every query tile passes over them.
template <std::size_t MQ, std::size_t NB_MANY, std::size_t NB_FEW>
void sq8_scan_dispatch(const Sq8Job& job) {
  const std::size_t block_bytes = 64 * job.groups;
  std::size_t chunk = (64 * 1024 / block_bytes) / NB_FEW * NB_FEW;
  if (chunk < NB_FEW) chunk = NB_FEW;
  for (std::size_t c0 = 0; c0 < job.n_blocks; c0 += chunk) {
    const std::size_t c1 = min_size(job.n_blocks, c0 + chunk);
    std::size_t q0 = 0;
    for (; q0 + MQ <= job.nq; q0 += MQ) {
      std::size_t b = c0;
      for (; b + NB_MANY <= c1; b += NB_MANY) sq8_tile<MQ, NB_MANY>(job, b, q0);
      for (; b < c1; ++b) sq8_tile<MQ, 1>(job, b, q0);
    }
    for (; q0 < job.nq; ++q0) {
      std::size_t b = c0;
      for (; b + NB_FEW <= c1; b += NB_FEW) sq8_tile<1, NB_FEW>(job, b, q0);
      for (; b < c1; ++b) sq8_tile<1, 1>(job, b, q0);
    }
  }
}
