// CPU kernel of the fused DEE dilated convolution (see dee_conv.h for the operator).
//
// Direct convolution over the 25 real taps only, reading each input once for both DEE
// branches. The input is zero-padded by 3 once per call, so the inner loop has no bounds
// checks. Micro-tile: 6 output positions x 16 output channels held in 12 vector registers;
// each (tap, channel) step broadcasts 6 inputs against 16 weights (weight[t][c][o..o+16] is
// contiguous in the operator's layout, so weights stream without repacking). The padded copy
// is channels-last, so the inner loop over channels reads each position's inputs in order.
// Loops run channel block (64) > tap > position tile, so a block's weights for one tap
// (64 x 16 floats) stay in L1 while every position tile uses them. Work
// items (image, 16-output block) are spread over std::threads. Vectors are GCC/Clang vector
// extensions: AVX2/AVX-512 FMAs with -march=native on x86, NEON on ARM, from one source.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "dee_conv.h"

namespace {

typedef float v8 __attribute__((vector_size(32)));

inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

constexpr int kOut = 16;           // output channels per micro-tile
constexpr int kPos = 6;            // output positions per micro-tile
constexpr int64_t kChannelBlock = 64;
constexpr int kPad = deen::kDeeMaxDilation;

struct Shape {
  int64_t n, c, h, w, o, hp, wp;
  int64_t offsets[deen::kDeeTaps];  // each tap's offset in a padded plane, from (row, col)
};

template <typename Fn>
void parallel_for(int64_t count, int threads, Fn fn) {
  const int workers = static_cast<int>(std::min<int64_t>(threads, count));
  if (workers <= 1) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    for (int64_t i = next++; i < count; i = next++) fn(i);
  };
  std::vector<std::thread> pool;
  for (int k = 1; k < workers; ++k) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

// tile[p][0..16) += sum over channels [c0, c1) of tap t at output positions first + p, p < P
// (positions run over the whole image, row by row; where[q] is position q's offset in a
// padded plane). weights: weight[t][c][o0..o0+16) at weights + (t * C + c) * ld.
template <int P>
inline void micro_tile(const Shape& s, const float* image, const float* weights, int64_t ld,
                       int t, int64_t c0, int64_t c1, const int64_t* where, float* tile) {
  v8 acc[P][2];
  for (int p = 0; p < P; ++p) {
    acc[p][0] = load8(tile + p * kOut);
    acc[p][1] = load8(tile + p * kOut + 8);
  }
  const float* x = image + c0 + s.offsets[t];
  int64_t at[P];
  for (int p = 0; p < P; ++p) at[p] = where[p];
  const float* wt = weights + (t * s.c + c0) * ld;
  for (int64_t c = c0; c < c1; ++c, ++x, wt += ld) {
    const v8 w0 = load8(wt), w1 = load8(wt + 8);
    for (int p = 0; p < P; ++p) {
      const float value = x[at[p]];
      const v8 xb = {value, value, value, value, value, value, value, value};
      acc[p][0] += xb * w0;
      acc[p][1] += xb * w1;
    }
  }
  for (int p = 0; p < P; ++p) {
    store8(tile + p * kOut, acc[p][0]);
    store8(tile + p * kOut + 8, acc[p][1]);
  }
}

using MicroTile = void (*)(const Shape&, const float*, const float*, int64_t, int, int64_t,
                           int64_t, const int64_t*, float*);
constexpr MicroTile kMicroTiles[kPos + 1] = {nullptr,         micro_tile<1>, micro_tile<2>,
                                             micro_tile<3>,   micro_tile<4>, micro_tile<5>,
                                             micro_tile<6>};

}  // namespace

int deen_dee_conv_f32(const float* x, const float* weight, float* y, int64_t n,
                                 int64_t c, int64_t h, int64_t w, int64_t o, int threads) {
  if (!x || !weight || !y || n < 0 || c <= 0 || h <= 0 || w <= 0 || o <= 0) return -1;
  if (n == 0) return 0;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  Shape s{n, c, h, w, o, h + 2 * kPad, w + 2 * kPad, {}};
  for (int t = 0; t < deen::kDeeTaps; ++t) {
    int dy, dx;
    deen::dee_tap_offset(t, &dy, &dx);
    s.offsets[t] = ((kPad + dy) * s.wp + (kPad + dx)) * c;
  }
  // Zero-padded and channels-last, so a position's channels are contiguous for the inner loop.
  const int64_t plane = s.hp * s.wp;
  std::vector<float> padded(static_cast<size_t>(n * c * plane), 0.0f);
  parallel_for(n * h, threads, [&](int64_t nr) {
    const int64_t image = nr / h, r = nr % h;
    float* row = &padded[((image * s.hp + r + kPad) * s.wp + kPad) * c];
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* source = x + ((image * c + ch) * h + r) * w;
      for (int64_t col = 0; col < w; ++col) row[col * c + ch] = source[col];
    }
  });
  std::vector<int64_t> where(static_cast<size_t>(h * w));
  for (int64_t q = 0; q < h * w; ++q) where[q] = ((q / w) * s.wp + q % w) * c;
  // The last output block, when O is not a multiple of 16, reads zero-padded weights.
  const int64_t blocks = (o + kOut - 1) / kOut, tail = o % kOut;
  std::vector<float> tail_weights;
  if (tail) {
    tail_weights.assign(static_cast<size_t>(deen::kDeeTaps * c * kOut), 0.0f);
    for (int64_t tc = 0; tc < deen::kDeeTaps * c; ++tc)
      std::memcpy(&tail_weights[tc * kOut], weight + tc * o + (blocks - 1) * kOut,
                  sizeof(float) * tail);
  }
  parallel_for(n * blocks, threads, [&](int64_t item) {
    const int64_t image = item / blocks, block = item % blocks, o0 = block * kOut;
    const bool is_tail = tail && block == blocks - 1;
    const float* weights = is_tail ? tail_weights.data() : weight + o0;
    const int64_t ld = is_tail ? kOut : o, outputs = is_tail ? tail : kOut;
    std::vector<float> tile(static_cast<size_t>(h * w * kOut), 0.0f);
    const float* source = padded.data() + image * c * plane;
    // Per (channel block, tap) the block's weights (64 x 16 floats) stay in L1 while every
    // position tile uses them.
    for (int64_t c0 = 0; c0 < c; c0 += kChannelBlock) {
      const int64_t c1 = std::min(c, c0 + kChannelBlock);
      for (int t = 0; t < deen::kDeeTaps; ++t)
        for (int64_t first = 0; first < h * w; first += kPos) {
          const int positions = static_cast<int>(std::min<int64_t>(kPos, h * w - first));
          kMicroTiles[positions](s, source, weights, ld, t, c0, c1, &where[first],
                                 &tile[first * kOut]);
        }
    }
    float* out = y + (image * o + o0) * h * w;
    for (int64_t j = 0; j < outputs; ++j)
      for (int64_t pos = 0; pos < h * w; ++pos)
        out[j * h * w + pos] = std::max(0.0f, tile[pos * kOut + j]);
  });
  return 0;
}
