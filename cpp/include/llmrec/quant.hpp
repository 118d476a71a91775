// Compressed item vectors and top-k search over them: half precision (fp16) and
// per-dimension affine int8 (sq8), optionally re-ranked exactly from kept float32
// vectors. Same contract as topk::search: inner product, filters applied inside the
// scan, rows sorted by score descending, ties by smaller id, -1 / -inf padding.
//
// Storage is owned by the caller (numpy arrays in the Python facade), so indexes can
// be memory-mapped and grown without the core holding state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "llmrec/topk.hpp"

namespace llmrec::quant {

// ---- sq8 -----------------------------------------------------------------------------
// Each dimension i is stored as s in [-127, 127], x ~= mid[i] + s * step[i], kept as the
// byte s + 128. Items are laid out in blocks of kSq8Block: for every group of four
// dimensions, the 16 items' four bytes follow each other ([group][item][4]), so a SIMD
// register holds one group of 16 (or 8) items and scores need no horizontal sums.
// Dimensions are padded to a multiple of 4 with s = 0.
//
// Residual sq8 (what QuantizedIndex builds since file format 2): each row is stored as
// its difference from a base vector b (the nearest of a few hundred coarse k-means
// centroids, or its inverted list's centroid) with its own scale a, x ~= b + mid + a * s * step,
// so the int8 levels follow each item's own spread instead of the whole data set's; the
// search adds q . b (one table per query) and multiplies the integer dot by a.
inline constexpr std::size_t kSq8Block = 16;
inline std::size_t sq8_groups(std::size_t d) { return (d + 3) / 4; }
inline std::size_t sq8_block_bytes(std::size_t d) { return kSq8Block * 4 * sq8_groups(d); }
inline std::size_t sq8_blocks(std::size_t n) { return (n + kSq8Block - 1) / kSq8Block; }

// Per-dimension range of n training rows (min to max) as mid and step (d floats each).
void sq8_train(const float* x, std::size_t n, std::size_t d, float* mid, float* step);

// Encodes n rows into item slots first_slot .. first_slot + n of `blocks`, which must
// hold sq8_blocks(first_slot + n) blocks. With `slots`, row r goes to slot slots[r]
// instead of first_slot + r. Without `item_scales`, values outside the trained range are
// clamped. With `item_scales` (one float per slot), row r is encoded as the residual
// x - bases[base_of[r]] (when `bases` is given) with z = (residual - mid) / step and its
// scale a = max |z| / 127 written to item_scales[slot], s = round(z / a): no clamping.
void sq8_encode(const float* x, std::size_t n, std::size_t d, const float* mid, const float* step,
                uint8_t* blocks, std::size_t first_slot, std::size_t num_threads,
                const int64_t* slots = nullptr, const float* bases = nullptr,
                const int32_t* base_of = nullptr, float* item_scales = nullptr);

// Copies the codes of slots src_slots[j] of `src` to slots dst_slots[j] of `dst`.
void sq8_copy_slots(const uint8_t* src, const int64_t* src_slots, uint8_t* dst, const int64_t* dst_slots,
                    std::size_t count, std::size_t d);

// Reconstructs items first .. first + n as float rows mid + a * s * step (a = 1 without
// item_scales, indexed by slot); residual codes then need their base added.
void sq8_decode(const uint8_t* blocks, std::size_t first, std::size_t n, std::size_t d,
                const float* mid, const float* step, float* out, const float* item_scales = nullptr);

// ---- fp16 ----------------------------------------------------------------------------
// IEEE half precision, round to nearest even; rows stored as they are (n x d).
void fp16_encode(const float* x, std::size_t count, uint16_t* out);
void fp16_decode(const uint16_t* h, std::size_t count, float* out);

// ---- pq4 -----------------------------------------------------------------------------
// Product quantization with 16 centroids per subspace: d is cut into M subspaces of d / M
// dimensions, each stored as a 4-bit centroid index. Items are laid out in blocks of
// kPq4Block = 32: for subspace m the block holds 16 bytes at m * 16, byte j carrying item
// j in its low nibble and item j + 16 in its high nibble. M is padded to an even count
// (a padding subspace has code 0 and a zero table), so a 256-bit register holds the codes
// of two subspaces for 32 items.
inline constexpr std::size_t kPq4Block = 32;
inline std::size_t pq4_padded(std::size_t m) { return m + (m & 1); }
inline std::size_t pq4_block_bytes(std::size_t m) { return 16 * pq4_padded(m); }
inline std::size_t pq4_blocks(std::size_t n) { return (n + kPq4Block - 1) / kPq4Block; }

// Codebooks (m x 16 x d / m) trained by seeded k-means on each subspace of n rows.
// Throws std::invalid_argument when d % m != 0, m > 256 or n < 16.
void pq4_train(const float* x, std::size_t n, std::size_t d, std::size_t m, std::size_t iterations,
               uint64_t seed, std::size_t num_threads, float* codebooks);

// Nearest centroid (L2) of every subspace of n rows into slots first_slot.. (or slots[r])
// of `blocks`, which must hold pq4_blocks of the largest slot + 1.
void pq4_encode(const float* x, std::size_t n, std::size_t d, std::size_t m, const float* codebooks,
                uint8_t* blocks, std::size_t first_slot, std::size_t num_threads,
                const int64_t* slots = nullptr);

// Reads (get) or writes (set) the 4-bit code of subspace sub of a slot.
uint8_t pq4_get_code(const uint8_t* blocks, std::size_t m, std::size_t slot, std::size_t sub);
void pq4_set_code(uint8_t* blocks, std::size_t m, std::size_t slot, std::size_t sub, uint8_t code);

void pq4_copy_slots(const uint8_t* src, const int64_t* src_slots, uint8_t* dst, const int64_t* dst_slots,
                    std::size_t count, std::size_t m);

// Reconstructs slots first .. first + n as float rows (the centroids their codes name).
void pq4_decode(const uint8_t* blocks, std::size_t first, std::size_t n, std::size_t d, std::size_t m,
                const float* codebooks, float* out);

// The per-query lookup tables the scan reads: for subspace s and centroid c the float
// table T[s][c] = q_s . centroid is stored as round((T[s][c] - min_c T[s][c]) * a) in
// uint8 with one scale a = 255 / max_s (max_c T[s][c] - min_c T[s][c]) per query, so a
// code sum acc gives the score bias + acc / a with bias = sum_s min_c T[s][c].
// luts: nq x pq4_padded(m) x 16 (padding subspaces zero); bias, inverse_scale: nq.
void pq4_tables(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks,
                uint8_t* luts, float* bias, float* inverse_scale);

// ---- search --------------------------------------------------------------------------
enum class Codec { fp16, sq8, pq4 };

// What ranks a query's inverted lists, built once per list layout: the centroids of the
// non-empty lists (only those are probed, so `probes` lists that hold items are scanned
// even where empty lists tie with them), packed for the batch-invariant topk::search_packed,
// and their list numbers in ascending order (so equal scores still rank the smaller list
// number first). A centroid's score is the one that assigned the items to its list.
struct ListRanking {
  ListRanking() = default;
  ListRanking(const float* centroids, const int64_t* list_sizes, std::size_t partitions, std::size_t d);
  topk::PackedItems centroids;
  std::vector<int64_t> lists;
};

// A read-only view of one index's arrays.
struct IndexView {
  Codec codec = Codec::sq8;
  std::size_t n = 0;
  std::size_t d = 0;
  const uint8_t* sq8_blocks = nullptr;  // sq8: sq8_blocks(n) blocks
  const float* sq8_mid = nullptr;       // sq8: d
  const float* sq8_step = nullptr;      // sq8: d
  // Residual sq8: per-slot scales (blocks * 16), and, for a flat index, per-slot base
  // numbers into sq8_bases (sq8_n_bases x d); with partitions the base is the list's centroid.
  const float* sq8_item_scales = nullptr;
  const uint16_t* sq8_item_bases = nullptr;
  const float* sq8_bases = nullptr;
  std::size_t sq8_n_bases = 0;
  const uint16_t* fp16_rows = nullptr;  // fp16: n x d
  const uint8_t* pq4_blocks = nullptr;  // pq4: pq4_blocks(slots) blocks
  const float* pq4_codebooks = nullptr; // pq4: m x 16 x d / m
  std::size_t pq4_m = 0;                // pq4: subspaces
  const float* vectors = nullptr;       // optional float32 rows for exact re-ranking (id order)

  // Partitions (an inverted file): codes are stored list by list in slots; list p holds
  // slots list_starts[p] .. list_starts[p] + list_sizes[p] (sq8: starts are multiples of
  // kSq8Block, pq4: of kPq4Block), and slot_ids gives each slot's item id: every slot of a
  // list holds an id in [0, n), each id once (the search trusts this; the bindings'
  // QuantizedView checks it when the storage changes). Without partitions slot = id.
  std::size_t partitions = 0;
  std::size_t slots = 0;                // total slots (codes arrays are sized by slots)
  const ListRanking* ranking = nullptr;  // built from the partitions x d centroids and list sizes
  const int64_t* list_starts = nullptr;
  const int64_t* list_sizes = nullptr;
  const int64_t* slot_ids = nullptr;
  std::size_t probes = 1;               // lists scanned per query: those with the largest q . c
};

// Top-k by codec scores (over the `probes` best non-empty lists when partitioned, ranked
// by the batch-invariant exact search, topk::search_packed; there, equal scores from
// different lists are ordered by id for pq4 without filters, and are not guaranteed to be
// otherwise); with rerank > 0 (and vectors), the best rerank * k candidates per query are
// re-scored exactly (topk::rescore) and the returned scores are exact inner products.
void search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
            const topk::Filter& filter, std::size_t rerank, std::size_t num_threads,
            int64_t* out_ids, float* out_scores);

// The sq8 kernel in use: "scalar", "avx2" or "avx512vnni" (follows the SIMD level).
const char* sq8_kernel_name();
// Whether the AVX-512 VNNI kernel may be used where the CPU has it (tests turn it off
// to check the AVX2 kernel under the avx512 level too).
void set_vnni_enabled(bool enabled);
bool vnni_supported();
// The pq4 kernel in use: "scalar", "avx2" or "avx512" (follows the SIMD level).
const char* pq4_kernel_name();

}  // namespace llmrec::quant
