// The register-blocked score-and-select kernels shared by the AVX2 and AVX-512
// translation units. Include inside an anonymous namespace after defining `Isa`:
//   using V;  static constexpr std::size_t W;              vector type, float lanes
//   V zero();  V load(const float*);  V load_first(const float*, std::size_t n);
//   V broadcast(const float*);  void store(float*, V);  V fma(V a, V b, V acc);
//   unsigned greater(V a, V b)                 bit i set where a[i] > b[i]
//   __m128 sum4(V a, V b, V c, V d)            the four lane sums
//
// Two layouts, chosen by the number of queries:
// - few queries (memory bound): lanes run along the dimension, MR queries x NR items of
//   accumulators, reduced horizontally at the end of each tile;
// - many queries (compute bound): the queries are transposed once into panels of QV
//   vectors, lanes run across queries, and each item's value is broadcast, so a tile is
//   NR items x QV vectors of scores with no reduction, compared in one instruction per
//   vector against the panel's thresholds.
// Items are read in place in both, so gathered rows (allow-lists) cost the same as
// contiguous ones. A third layout, for items packed once (topk::search_packed), is at
// the end: lanes across items, the same arithmetic for every pair whatever the batch.

#define LLMREC_UNROLL _Pragma("GCC unroll 32")

inline std::size_t min_size(std::size_t a, std::size_t b) { return a < b ? a : b; }
inline std::size_t max_size(std::size_t a, std::size_t b) { return a < b ? b : a; }

inline int64_t item_at(const ScanJob& job, std::size_t position) {
  return job.positions ? job.positions[position] : static_cast<int64_t>(position);
}

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

// Few queries: scans job.begin..job.end in panels of NR items; every block of MR query
// rows is scored while the panel's rows sit in L1. Edge panels and blocks repeat their
// last valid row and ignore the duplicate scores.
constexpr std::size_t kPrefetchRows = 32;

template <std::size_t MR, std::size_t NR>
void scan_rows(const ScanJob& job) {
  const std::size_t d = job.d;
  const float* x[NR];
  int64_t ids[NR];
  const float* q[MR];
  float s[MR][NR];
  for (std::size_t p0 = job.begin; p0 < job.end; p0 += NR) {
    const std::size_t n_items = min_size(NR, job.end - p0);
    for (std::size_t j = 0; j < NR; ++j) {
      ids[j] = item_at(job, p0 + min_size(j, n_items - 1));
      x[j] = job.items + static_cast<std::size_t>(ids[j]) * d;
    }
    if (!job.positions && p0 + kPrefetchRows + NR <= job.end) {
      // Memory bound: request rows a few panels ahead so more misses are in flight.
      const char* ahead = reinterpret_cast<const char*>(x[0] + kPrefetchRows * d);
      for (std::size_t c = 0; c < NR * d * sizeof(float); c += 64) _mm_prefetch(ahead + c, _MM_HINT_T0);
    }
    for (std::size_t q0 = 0; q0 < job.nq; q0 += MR) {
      const std::size_t n_queries = min_size(MR, job.nq - q0);
      for (std::size_t r = 0; r < MR; ++r) q[r] = job.queries + (q0 + min_size(r, n_queries - 1)) * d;
      score_tile<MR, NR>(q, x, d, s);
      for (std::size_t r = 0; r < n_queries; ++r) {
        float* threshold = job.thresholds + q0 + r;
        for (std::size_t j = 0; j < n_items; ++j)
          if (s[r][j] > *threshold) job.on_hit(job.context, q0 + r, ids[j], s[r][j]);
      }
    }
  }
}

// Many queries: see the file comment. Panels hold QV * W queries as [d][QV * W]; the
// padding lanes get threshold +inf so they never report.
template <std::size_t NR, std::size_t QV>
void scan_panels(const ScanJob& job) {
  constexpr std::size_t QW = QV * Isa::W;
  const std::size_t d = job.d;
  const std::size_t n_panels = (job.nq + QW - 1) / QW;
  float* packed = job.scratch + ((16 - (reinterpret_cast<std::uintptr_t>(job.scratch) / 4) % 16) % 16);
  for (std::size_t p = 0; p < n_panels; ++p) {
    float* panel = packed + p * d * QW;
    for (std::size_t lane = 0; lane < QW; ++lane) {
      const std::size_t q = p * QW + lane;
      for (std::size_t i = 0; i < d; ++i) panel[i * QW + lane] = q < job.nq ? job.queries[q * d + i] : 0.f;
    }
  }
  // Items in blocks that stay in L2 while every query panel passes over them.
  const std::size_t block = max_size(NR, (96 * 1024 / (d * sizeof(float))) / NR * NR);
  alignas(64) float thresholds[QW];
  alignas(64) float scores[NR][QW];
  const float* x[NR];
  int64_t ids[NR];
  for (std::size_t b0 = job.begin; b0 < job.end; b0 += block) {
    const std::size_t b1 = min_size(job.end, b0 + block);
    for (std::size_t p = 0; p < n_panels; ++p) {
      const float* panel = packed + p * d * QW;
      const std::size_t q0 = p * QW, n_queries = min_size(QW, job.nq - q0);
      for (std::size_t lane = 0; lane < QW; ++lane)
        thresholds[lane] = lane < n_queries ? job.thresholds[q0 + lane] : INFINITY;
      for (std::size_t p0 = b0; p0 < b1; p0 += NR) {
        const std::size_t n_items = min_size(NR, b1 - p0);
        for (std::size_t j = 0; j < NR; ++j) {
          ids[j] = item_at(job, p0 + min_size(j, n_items - 1));
          x[j] = job.items + static_cast<std::size_t>(ids[j]) * d;
        }
        typename Isa::V acc[NR][QV];
        LLMREC_UNROLL for (std::size_t j = 0; j < NR; ++j)
          LLMREC_UNROLL for (std::size_t v = 0; v < QV; ++v) acc[j][v] = Isa::zero();
        for (std::size_t i = 0; i < d; ++i) {
          typename Isa::V qv[QV];
          LLMREC_UNROLL for (std::size_t v = 0; v < QV; ++v) qv[v] = Isa::load(panel + i * QW + v * Isa::W);
          LLMREC_UNROLL for (std::size_t j = 0; j < NR; ++j) {
            const typename Isa::V xv = Isa::broadcast(x[j] + i);
            LLMREC_UNROLL for (std::size_t v = 0; v < QV; ++v) acc[j][v] = Isa::fma(qv[v], xv, acc[j][v]);
          }
        }
        // Every index is a compile-time constant here, so acc never leaves registers
        // until a score actually beats a threshold (rare once the heaps are full).
        unsigned hits[NR][QV];
        unsigned any = 0;
        LLMREC_UNROLL for (std::size_t j = 0; j < NR; ++j)
          LLMREC_UNROLL for (std::size_t v = 0; v < QV; ++v) {
            hits[j][v] = j < n_items ? Isa::greater(acc[j][v], Isa::load(thresholds + v * Isa::W)) : 0u;
            any |= hits[j][v];
          }
        if (!any) continue;
        LLMREC_UNROLL for (std::size_t j = 0; j < NR; ++j)
          LLMREC_UNROLL for (std::size_t v = 0; v < QV; ++v) Isa::store(&scores[j][v * Isa::W], acc[j][v]);
        for (std::size_t j = 0; j < NR; ++j)
          for (std::size_t v = 0; v < QV; ++v)
            for (unsigned h = hits[j][v]; h; h &= h - 1) {
              const std::size_t lane = v * Isa::W + static_cast<std::size_t>(__builtin_ctz(h));
              job.on_hit(job.context, q0 + lane, ids[j], scores[j][lane]);
              thresholds[lane] = job.thresholds[q0 + lane];
            }
      }
    }
  }
}

// Picks the layout for the number of queries. MR: query rows per tile when few;
// NR2 / NR1: items per tile for panels of two vectors / one vector of queries.
template <std::size_t MR, std::size_t NR2, std::size_t NR1>
void scan_dispatch(const ScanJob& job) {
  if (job.nq == 1)
    scan_rows<1, 8>(job);
  else if (job.nq == 2)
    scan_rows<2, 4>(job);
  else if (job.nq < Isa::W)
    scan_rows<MR, 4>(job);
  else if (job.nq < 2 * Isa::W)
    scan_panels<NR1, 1>(job);
  else
    scan_panels<NR2, 2>(job);
}

// Packed items (topk::search_packed): lanes run across the kGroup items of a group, each
// query value is broadcast, and a tile is MR queries x NG groups of accumulators, so
// every score is the same fma chain over the dimensions in order, whatever the tile (and
// hence whatever the number of queries). Edge tiles repeat their last query or group
// and ignore the duplicate scores.
template <std::size_t MR, std::size_t NG>
void scan_packed_tiles(const PackedScanJob& job) {
  constexpr std::size_t G = PackedScanJob::kGroup, VG = G / Isa::W, NV = NG * VG;
  static_assert(G % Isa::W == 0 && G <= 32, "a group is whole vectors, one mask word");
  const std::size_t d = job.d;
  const float* group[NG];
  const float* q[MR];
  alignas(64) float scores[G];
  for (std::size_t g0 = job.begin; g0 < job.end; g0 += NG * G) {
    const std::size_t n_groups = min_size(NG, (job.end - g0 + G - 1) / G);
    for (std::size_t j = 0; j < NG; ++j) group[j] = job.packed + (g0 / G + min_size(j, n_groups - 1)) * d * G;
    for (std::size_t q0 = 0; q0 < job.nq; q0 += MR) {
      const std::size_t n_queries = min_size(MR, job.nq - q0);
      for (std::size_t r = 0; r < MR; ++r) q[r] = job.queries + (q0 + min_size(r, n_queries - 1)) * d;
      typename Isa::V acc[MR][NV];
      LLMREC_UNROLL for (std::size_t r = 0; r < MR; ++r)
        LLMREC_UNROLL for (std::size_t u = 0; u < NV; ++u) acc[r][u] = Isa::zero();
      for (std::size_t i = 0; i < d; ++i) {
        typename Isa::V c[NV];
        LLMREC_UNROLL for (std::size_t u = 0; u < NV; ++u) c[u] = Isa::load(group[u / VG] + i * G + (u % VG) * Isa::W);
        LLMREC_UNROLL for (std::size_t r = 0; r < MR; ++r) {
          const typename Isa::V b = Isa::broadcast(q[r] + i);
          LLMREC_UNROLL for (std::size_t u = 0; u < NV; ++u) acc[r][u] = Isa::fma(b, c[u], acc[r][u]);
        }
      }
      LLMREC_UNROLL for (std::size_t r = 0; r < MR; ++r) {
        if (r >= n_queries) break;
        float* threshold = job.thresholds + q0 + r;
        const typename Isa::V t = Isa::set1(*threshold);
        LLMREC_UNROLL for (std::size_t j = 0; j < NG; ++j) {
          if (j >= n_groups) break;
          const std::size_t first = g0 + j * G, count = min_size(G, job.end - first);
          unsigned hits = 0;
          LLMREC_UNROLL for (std::size_t v = 0; v < VG; ++v)
            hits |= Isa::greater(acc[r][j * VG + v], t) << (v * Isa::W);
          if (count < G) hits &= (1u << count) - 1;
          if (!hits) continue;
          LLMREC_UNROLL for (std::size_t v = 0; v < VG; ++v) Isa::store(scores + v * Isa::W, acc[r][j * VG + v]);
          for (; hits; hits &= hits - 1) {  // ascending ids; the threshold may rise on the way
            const std::size_t lane = static_cast<std::size_t>(__builtin_ctz(hits));
            if (scores[lane] > *threshold)
              job.on_hit(job.context, q0 + r, static_cast<int64_t>(first + lane), scores[lane]);
          }
        }
      }
    }
  }
}

// One query reads each group once: NG1 groups per tile keep enough fma chains in flight;
// a few queries take two rows of NG2 groups, many take MR rows of NG groups.
template <std::size_t NG1, std::size_t NG2, std::size_t MR, std::size_t NG>
void scan_packed_dispatch(const PackedScanJob& job) {
  if (job.nq == 1)
    scan_packed_tiles<1, NG1>(job);
  else if (job.nq < MR)
    scan_packed_tiles<2, NG2>(job);
  else
    scan_packed_tiles<MR, NG>(job);
}
