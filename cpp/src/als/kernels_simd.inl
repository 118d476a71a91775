// The ALS kernels shared by the AVX2 and AVX-512 translation units. Include inside an
// anonymous namespace after defining `Isa`:
//   using V;  static constexpr std::size_t W;   vector type, float lanes
//   V zero();  V load(const float*);  void store(float*, V);  V set1(float);
//   V fma(V a, V b, V acc);  V add(V, V);  float hsum(V);
// and, beside it, `kBlockRows` (rows per block of the gathered-row kernels),
// `hsum_rows(const V* acc, float* out)` (kBlockRows horizontal sums, bit-identical to hsum)
// and `kSymvVectors` (vectors of each product that symv_rows keeps in registers).
// No library code is used here (see CMakeLists.txt: these files get ISA flags).

inline const float* row_of(const float* Y, std::size_t f, const int32_t* idx, std::size_t k) {
  return Y + (idx ? static_cast<std::size_t>(idx[k]) : k) * f;
}

inline void prefetch_row(const float* y, std::size_t f) {
  const char* p = reinterpret_cast<const char*>(y);
  for (std::size_t b = 0; b < f * sizeof(float); b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
}

inline float dot_impl(const float* a, const float* b, std::size_t n) {
  typename Isa::V acc0 = Isa::zero(), acc1 = Isa::zero();
  std::size_t i = 0;
  for (; i + 2 * Isa::W <= n; i += 2 * Isa::W) {
    acc0 = Isa::fma(Isa::load(a + i), Isa::load(b + i), acc0);
    acc1 = Isa::fma(Isa::load(a + i + Isa::W), Isa::load(b + i + Isa::W), acc1);
  }
  for (; i + Isa::W <= n; i += Isa::W) acc0 = Isa::fma(Isa::load(a + i), Isa::load(b + i), acc0);
  float s = Isa::hsum(Isa::add(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Two dot products with v at once: independent accumulator chains hide FMA latency.
inline void dot2(const float* a, const float* b, const float* v, std::size_t n, float* sa,
                 float* sb) {
  typename Isa::V a0 = Isa::zero(), a1 = Isa::zero(), b0 = Isa::zero(), b1 = Isa::zero();
  std::size_t i = 0;
  for (; i + 2 * Isa::W <= n; i += 2 * Isa::W) {
    const typename Isa::V v0 = Isa::load(v + i), v1 = Isa::load(v + i + Isa::W);
    a0 = Isa::fma(Isa::load(a + i), v0, a0);
    b0 = Isa::fma(Isa::load(b + i), v0, b0);
    a1 = Isa::fma(Isa::load(a + i + Isa::W), v1, a1);
    b1 = Isa::fma(Isa::load(b + i + Isa::W), v1, b1);
  }
  for (; i + Isa::W <= n; i += Isa::W) {
    const typename Isa::V v0 = Isa::load(v + i);
    a0 = Isa::fma(Isa::load(a + i), v0, a0);
    b0 = Isa::fma(Isa::load(b + i), v0, b0);
  }
  float x = Isa::hsum(Isa::add(a0, a1)), y = Isa::hsum(Isa::add(b0, b1));
  for (; i < n; ++i) {
    x += a[i] * v[i];
    y += b[i] * v[i];
  }
  *sa = x;
  *sb = y;
}

// d[r] = rows[r]·v for kBlockRows rows at once: each vector of v is loaded once for all
// rows, and the horizontal sums are batched (hsum_rows). Per row, the additions are the
// same as dot2's (two accumulators over alternating vectors, then the scalar tail).
inline void dot_rows(const float* const* rows, const float* v, std::size_t n, float* d) {
  typename Isa::V a0[kBlockRows], a1[kBlockRows];
  for (std::size_t r = 0; r < kBlockRows; ++r) a0[r] = a1[r] = Isa::zero();
  std::size_t i = 0;
  for (; i + 2 * Isa::W <= n; i += 2 * Isa::W) {
    const typename Isa::V v0 = Isa::load(v + i), v1 = Isa::load(v + i + Isa::W);
    for (std::size_t r = 0; r < kBlockRows; ++r) {
      a0[r] = Isa::fma(Isa::load(rows[r] + i), v0, a0[r]);
      a1[r] = Isa::fma(Isa::load(rows[r] + i + Isa::W), v1, a1[r]);
    }
  }
  if (i + Isa::W <= n) {
    const typename Isa::V v0 = Isa::load(v + i);
    for (std::size_t r = 0; r < kBlockRows; ++r) a0[r] = Isa::fma(Isa::load(rows[r] + i), v0, a0[r]);
    i += Isa::W;
  }
  for (std::size_t r = 0; r < kBlockRows; ++r) a0[r] = Isa::add(a0[r], a1[r]);
  hsum_rows(a0, d);
  for (; i < n; ++i)
    for (std::size_t r = 0; r < kBlockRows; ++r) d[r] += rows[r][i] * v[i];
}

// Rows this far ahead are prefetched (a block's worth): they are gathered from anywhere
// in Y, and the hardware prefetcher cannot guess where.
constexpr std::size_t kPrefetchDistance = kBlockRows;

// Blocks of kBlockRows rows: the dot products of a block first (dot_rows), then one pass
// over out adding every row of the block (each vector of out loaded and stored once per
// block). Per entry of out the additions run in row order, one FMA each, as in the pair
// and single-row steps that finish the rows.
inline void gather_apply_impl(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                              const float* c0, const float* c1, const float* v, float* out) {
  for (std::size_t j = 0; j < f; ++j) out[j] = 0.f;
  std::size_t k = 0;
  for (; k + kBlockRows <= n; k += kBlockRows) {
    if (idx)
      for (std::size_t r = 0; r < kPrefetchDistance && k + kBlockRows + r < n; ++r)
        prefetch_row(row_of(Y, f, idx, k + kBlockRows + r), f);
    const float* rows[kBlockRows];
    for (std::size_t r = 0; r < kBlockRows; ++r) rows[r] = row_of(Y, f, idx, k + r);
    float s[kBlockRows];
    if (c1) {
      float d[kBlockRows];
      dot_rows(rows, v, f, d);
      // One rounding, as the contracted `s += c1·d` of the pair and single-row steps.
      for (std::size_t r = 0; r < kBlockRows; ++r)
        s[r] = c0 ? std::fma(c1[k + r], d[r], c0[k + r]) : c1[k + r] * d[r];
    } else {
      for (std::size_t r = 0; r < kBlockRows; ++r) s[r] = c0 ? c0[k + r] : 0.f;
    }
    typename Isa::V ws[kBlockRows];
    for (std::size_t r = 0; r < kBlockRows; ++r) ws[r] = Isa::set1(s[r]);
    std::size_t j = 0;
    for (; j + Isa::W <= f; j += Isa::W) {
      typename Isa::V acc = Isa::load(out + j);
      for (std::size_t r = 0; r < kBlockRows; ++r) acc = Isa::fma(ws[r], Isa::load(rows[r] + j), acc);
      Isa::store(out + j, acc);
    }
    for (; j < f; ++j)
      for (std::size_t r = 0; r < kBlockRows; ++r) out[j] += s[r] * rows[r][j];
  }
  for (; k + 2 <= n; k += 2) {
    const float* ya = row_of(Y, f, idx, k);
    const float* yb = row_of(Y, f, idx, k + 1);
    float sa = c0 ? c0[k] : 0.f, sb = c0 ? c0[k + 1] : 0.f;
    if (c1) {
      float da, db;
      dot2(ya, yb, v, f, &da, &db);
      sa += c1[k] * da;
      sb += c1[k + 1] * db;
    }
    const typename Isa::V wa = Isa::set1(sa), wb = Isa::set1(sb);
    std::size_t j = 0;
    for (; j + Isa::W <= f; j += Isa::W)
      Isa::store(out + j, Isa::fma(wb, Isa::load(yb + j), Isa::fma(wa, Isa::load(ya + j), Isa::load(out + j))));
    for (; j < f; ++j) out[j] += sa * ya[j] + sb * yb[j];
  }
  if (k < n) {
    const float* y = row_of(Y, f, idx, k);
    float s = c0 ? c0[k] : 0.f;
    if (c1) s += c1[k] * dot_impl(y, v, f);
    const typename Isa::V ws = Isa::set1(s);
    std::size_t j = 0;
    for (; j + Isa::W <= f; j += Isa::W)
      Isa::store(out + j, Isa::fma(ws, Isa::load(y + j), Isa::load(out + j)));
    for (; j < f; ++j) out[j] += s * y[j];
  }
}

// Rank-4 blocks: each row segment of A is loaded and stored once per four input rows.
// Columns start at i rounded down to a whole vector, so a few entries below the
// diagonal are touched too (allowed by the contract).
inline void rank_update_impl(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                             const float* w, float* A) {
  std::size_t k = 0;
  for (; k + 4 <= n; k += 4) {
    const float* y0 = row_of(Y, f, idx, k);
    const float* y1 = row_of(Y, f, idx, k + 1);
    const float* y2 = row_of(Y, f, idx, k + 2);
    const float* y3 = row_of(Y, f, idx, k + 3);
    const float w0 = w ? w[k] : 1.f, w1 = w ? w[k + 1] : 1.f;
    const float w2 = w ? w[k + 2] : 1.f, w3 = w ? w[k + 3] : 1.f;
    for (std::size_t i = 0; i < f; ++i) {
      const float s0 = w0 * y0[i], s1 = w1 * y1[i], s2 = w2 * y2[i], s3 = w3 * y3[i];
      const typename Isa::V a0 = Isa::set1(s0), a1 = Isa::set1(s1);
      const typename Isa::V a2 = Isa::set1(s2), a3 = Isa::set1(s3);
      float* row = A + i * f;
      std::size_t j = i / Isa::W * Isa::W;
      for (; j + Isa::W <= f; j += Isa::W) {
        typename Isa::V acc = Isa::load(row + j);
        acc = Isa::fma(a0, Isa::load(y0 + j), acc);
        acc = Isa::fma(a1, Isa::load(y1 + j), acc);
        acc = Isa::fma(a2, Isa::load(y2 + j), acc);
        acc = Isa::fma(a3, Isa::load(y3 + j), acc);
        Isa::store(row + j, acc);
      }
      for (; j < f; ++j) row[j] += s0 * y0[j] + s1 * y1[j] + s2 * y2[j] + s3 * y3[j];
    }
  }
  for (; k < n; ++k) {
    const float* y = row_of(Y, f, idx, k);
    const float wk = w ? w[k] : 1.f;
    for (std::size_t i = 0; i < f; ++i) {
      const float s = wk * y[i];
      const typename Isa::V a = Isa::set1(s);
      float* row = A + i * f;
      std::size_t j = i / Isa::W * Isa::W;
      for (; j + Isa::W <= f; j += Isa::W) Isa::store(row + j, Isa::fma(a, Isa::load(y + j), Isa::load(row + j)));
      for (; j < f; ++j) row[j] += s * y[j];
    }
  }
}

// G v as a sum of G's rows scaled by v's entries (G is symmetric): blocks of four
// vectors of the result stay in registers, no horizontal sums.
inline void symv_impl(const float* G, std::size_t f, const float* v, float* out) {
  std::size_t i = 0;
  for (; i + 4 * Isa::W <= f; i += 4 * Isa::W) {
    typename Isa::V a0 = Isa::zero(), a1 = Isa::zero(), a2 = Isa::zero(), a3 = Isa::zero();
    for (std::size_t j = 0; j < f; ++j) {
      const typename Isa::V b = Isa::set1(v[j]);
      const float* row = G + j * f + i;
      a0 = Isa::fma(b, Isa::load(row), a0);
      a1 = Isa::fma(b, Isa::load(row + Isa::W), a1);
      a2 = Isa::fma(b, Isa::load(row + 2 * Isa::W), a2);
      a3 = Isa::fma(b, Isa::load(row + 3 * Isa::W), a3);
    }
    Isa::store(out + i, a0);
    Isa::store(out + i + Isa::W, a1);
    Isa::store(out + i + 2 * Isa::W, a2);
    Isa::store(out + i + 3 * Isa::W, a3);
  }
  for (; i + Isa::W <= f; i += Isa::W) {
    typename Isa::V a0 = Isa::zero();
    for (std::size_t j = 0; j < f; ++j) a0 = Isa::fma(Isa::set1(v[j]), Isa::load(G + j * f + i), a0);
    Isa::store(out + i, a0);
  }
  for (; i < f; ++i) {
    float s = 0.f;
    for (std::size_t j = 0; j < f; ++j) s += v[j] * G[j * f + i];
    out[i] = s;
  }
}

// out[b] = G v[b] for M vectors at once, each entry summed over j in the same order as
// symv_impl (so bit-identical to it): a block of kSymvVectors vectors of G's row j is
// loaded once and used for all M products, which makes the f × f matrix, streamed from
// L2 once per CG step, cost M times fewer loads.
template <std::size_t M>
inline void symv_block(const float* G, std::size_t f, const float* const* v, float* const* out) {
  constexpr std::size_t kV = kSymvVectors;
  std::size_t i = 0;
  for (; i + kV * Isa::W <= f; i += kV * Isa::W) {
    typename Isa::V acc[M][kV];
    for (std::size_t b = 0; b < M; ++b)
      for (std::size_t q = 0; q < kV; ++q) acc[b][q] = Isa::zero();
    for (std::size_t j = 0; j < f; ++j) {
      const float* row = G + j * f + i;
      typename Isa::V g[kV];
      for (std::size_t q = 0; q < kV; ++q) g[q] = Isa::load(row + q * Isa::W);
      for (std::size_t b = 0; b < M; ++b) {
        const typename Isa::V vj = Isa::set1(v[b][j]);
        for (std::size_t q = 0; q < kV; ++q) acc[b][q] = Isa::fma(vj, g[q], acc[b][q]);
      }
    }
    for (std::size_t b = 0; b < M; ++b)
      for (std::size_t q = 0; q < kV; ++q) Isa::store(out[b] + i + q * Isa::W, acc[b][q]);
  }
  for (; i + Isa::W <= f; i += Isa::W) {
    typename Isa::V acc[M];
    for (std::size_t b = 0; b < M; ++b) acc[b] = Isa::zero();
    for (std::size_t j = 0; j < f; ++j) {
      const typename Isa::V g = Isa::load(G + j * f + i);
      for (std::size_t b = 0; b < M; ++b) acc[b] = Isa::fma(Isa::set1(v[b][j]), g, acc[b]);
    }
    for (std::size_t b = 0; b < M; ++b) Isa::store(out[b] + i, acc[b]);
  }
  for (; i < f; ++i) {
    for (std::size_t b = 0; b < M; ++b) {
      float s = 0.f;
      for (std::size_t j = 0; j < f; ++j) s += v[b][j] * G[j * f + i];
      out[b][i] = s;
    }
  }
}

inline void symv_rows_impl(const float* G, std::size_t f, const float* const* v, std::size_t m,
                           float* const* out) {
  std::size_t b = 0;
  for (; b + 4 <= m; b += 4) symv_block<4>(G, f, v + b, out + b);
  switch (m - b) {
    case 3: symv_block<3>(G, f, v + b, out + b); break;
    case 2: symv_block<2>(G, f, v + b, out + b); break;
    case 1: symv_block<1>(G, f, v + b, out + b); break;
    default: break;
  }
}
