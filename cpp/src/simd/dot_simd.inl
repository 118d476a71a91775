// The float dot-product kernels of the AVX2 and AVX-512 translation units. Include
// inside an anonymous namespace after defining `Isa`:
//   using V;  static constexpr std::size_t W;        vector type, float lanes
//   V zero();  V load(const float*);  V load_first(const float*, std::size_t n);
//   V fma(V a, V b, V acc);  __m128 sum4(V a, V b, V c, V d)   the four lane sums
//   V load_i8(const int8_t*);  V load_first_i8(const int8_t*, std::size_t n)   codes as floats
// No library code is used here (these files get ISA flags).

inline float dot_impl(const float* a, const float* b, std::size_t n) {
  typename Isa::V acc0 = Isa::zero(), acc1 = Isa::zero();
  std::size_t i = 0;
  for (; i + 2 * Isa::W <= n; i += 2 * Isa::W) {
    acc0 = Isa::fma(Isa::load(a + i), Isa::load(b + i), acc0);
    acc1 = Isa::fma(Isa::load(a + i + Isa::W), Isa::load(b + i + Isa::W), acc1);
  }
  for (; i + Isa::W <= n; i += Isa::W) acc0 = Isa::fma(Isa::load(a + i), Isa::load(b + i), acc0);
  if (i < n) acc1 = Isa::fma(Isa::load_first(a + i, n - i), Isa::load_first(b + i, n - i), acc1);
  const __m128 s = Isa::sum4(acc0, acc1, Isa::zero(), Isa::zero());
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

// The int8 twin of dot_impl: a row of codes (each converted exactly to float) · q.
// Re-scoring reads tens of thousands of int8 text rows per free-text request.
inline float dot_i8_impl(const int8_t* a, const float* q, std::size_t n) {
  typename Isa::V acc0 = Isa::zero(), acc1 = Isa::zero();
  std::size_t i = 0;
  for (; i + 2 * Isa::W <= n; i += 2 * Isa::W) {
    acc0 = Isa::fma(Isa::load_i8(a + i), Isa::load(q + i), acc0);
    acc1 = Isa::fma(Isa::load_i8(a + i + Isa::W), Isa::load(q + i + Isa::W), acc1);
  }
  for (; i + Isa::W <= n; i += Isa::W) acc0 = Isa::fma(Isa::load_i8(a + i), Isa::load(q + i), acc0);
  if (i < n) acc1 = Isa::fma(Isa::load_first_i8(a + i, n - i), Isa::load_first(q + i, n - i), acc1);
  const __m128 s = Isa::sum4(acc0, acc1, Isa::zero(), Isa::zero());
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

// Four rows per pass: four independent FMA chains share each load of v, and their
// horizontal sums finish in one sum4 and one vector max.
inline void max_dot_impl(const float* rows, std::size_t m, std::size_t d, const float* v,
                         float* best) {
  const std::size_t tail = d % Isa::W, body = d - tail;
  std::size_t r = 0;
  for (; r + 4 <= m; r += 4) {
    const float* x0 = rows + r * d;
    const float* x1 = x0 + d;
    const float* x2 = x1 + d;
    const float* x3 = x2 + d;
    typename Isa::V a0 = Isa::zero(), a1 = Isa::zero(), a2 = Isa::zero(), a3 = Isa::zero();
    for (std::size_t i = 0; i < body; i += Isa::W) {
      const typename Isa::V vi = Isa::load(v + i);
      a0 = Isa::fma(Isa::load(x0 + i), vi, a0);
      a1 = Isa::fma(Isa::load(x1 + i), vi, a1);
      a2 = Isa::fma(Isa::load(x2 + i), vi, a2);
      a3 = Isa::fma(Isa::load(x3 + i), vi, a3);
    }
    if (tail) {
      const typename Isa::V vi = Isa::load_first(v + body, tail);
      a0 = Isa::fma(Isa::load_first(x0 + body, tail), vi, a0);
      a1 = Isa::fma(Isa::load_first(x1 + body, tail), vi, a1);
      a2 = Isa::fma(Isa::load_first(x2 + body, tail), vi, a2);
      a3 = Isa::fma(Isa::load_first(x3 + body, tail), vi, a3);
    }
    _mm_storeu_ps(best + r, _mm_max_ps(_mm_loadu_ps(best + r), Isa::sum4(a0, a1, a2, a3)));
  }
  for (; r < m; ++r) {
    const float s = dot_impl(rows + r * d, v, d);
    if (s > best[r]) best[r] = s;
  }
}
