// The register-blocked score-and-select kernel, shared by the AVX2 and AVX-512
// translation units. Include it inside an anonymous namespace after defining `Isa`:
//   using V;  static constexpr std::size_t W;        vector type and float lanes
//   V zero();  V load(const float*);  V load_first(const float*, std::size_t n);
//   V fma(V a, V b, V acc);  __m128 sum4(V a, V b, V c, V d)  -> the four lane sums
// Lanes run along the dimension: a tile of MR queries x NR items keeps MR*NR
// accumulators in registers, so neither side needs packing and gathered item rows
// (allow-lists) cost the same as contiguous ones.

inline std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }

template <std::size_t MR, std::size_t NR>
inline void score_tile(const float* const* q, const float* const* x, std::size_t d,
                       float out[MR][NR]) {
  static_assert(NR % 4 == 0, "items are reduced four at a time");
  typename Isa::V acc[MR][NR];
  for (std::size_t r = 0; r < MR; ++r)
    for (std::size_t j = 0; j < NR; ++j) acc[r][j] = Isa::zero();
  std::size_t i = 0;
  for (; i + Isa::W <= d; i += Isa::W) {
    typename Isa::V xv[NR];
    for (std::size_t j = 0; j < NR; ++j) xv[j] = Isa::load(x[j] + i);
    for (std::size_t r = 0; r < MR; ++r) {
      const typename Isa::V qv = Isa::load(q[r] + i);
      for (std::size_t j = 0; j < NR; ++j) acc[r][j] = Isa::fma(qv, xv[j], acc[r][j]);
    }
  }
  if (i < d) {
    const std::size_t rest = d - i;
    typename Isa::V xv[NR];
    for (std::size_t j = 0; j < NR; ++j) xv[j] = Isa::load_first(x[j] + i, rest);
    for (std::size_t r = 0; r < MR; ++r) {
      const typename Isa::V qv = Isa::load_first(q[r] + i, rest);
      for (std::size_t j = 0; j < NR; ++j) acc[r][j] = Isa::fma(qv, xv[j], acc[r][j]);
    }
  }
  for (std::size_t r = 0; r < MR; ++r)
    for (std::size_t j = 0; j < NR; j += 4)
      _mm_storeu_ps(&out[r][j], Isa::sum4(acc[r][j], acc[r][j + 1], acc[r][j + 2], acc[r][j + 3]));
}

// Scans job.begin..job.end in panels of NR items; for each panel every query block of
// MR rows is scored while the panel's rows sit in L1. Edge panels and blocks repeat
// their last valid row and ignore the duplicate scores.
template <std::size_t MR, std::size_t NR>
void scan_tiles(const ScanJob& job) {
  const std::size_t d = job.d;
  const float* x[NR];
  int64_t ids[NR];
  const float* q[MR];
  float s[MR][NR];
  for (std::size_t p0 = job.begin; p0 < job.end; p0 += NR) {
    const std::size_t n_items = min_size(NR, job.end - p0);
    for (std::size_t j = 0; j < NR; ++j) {
      const std::size_t p = p0 + min_size(j, n_items - 1);
      ids[j] = job.positions ? job.positions[p] : static_cast<int64_t>(p);
      x[j] = job.items + static_cast<std::size_t>(ids[j]) * d;
    }
    for (std::size_t q0 = 0; q0 < job.nq; q0 += MR) {
      const std::size_t n_queries = min_size(MR, job.nq - q0);
      for (std::size_t r = 0; r < MR; ++r)
        q[r] = job.queries + (q0 + min_size(r, n_queries - 1)) * d;
      score_tile<MR, NR>(q, x, d, s);
      for (std::size_t r = 0; r < n_queries; ++r) {
        float* threshold = job.thresholds + q0 + r;
        for (std::size_t j = 0; j < n_items; ++j)
          if (s[r][j] > *threshold) job.on_hit(job.context, q0 + r, ids[j], s[r][j]);
      }
    }
  }
}

// One query streams items from memory eight rows at a time; more queries share each
// panel of four rows across MR-query blocks.
template <std::size_t MR>
void scan_dispatch(const ScanJob& job) {
  if (job.nq == 1)
    scan_tiles<1, 8>(job);
  else if (job.nq == 2)
    scan_tiles<2, 4>(job);
  else
    scan_tiles<MR, 4>(job);
}
