// CUDA kernels of the fused DEE dilated convolution (see dee_conv.h for the operator).
//
// Implicit GEMM: Y[o][p] = ReLU(sum_k A[k][o] * B[k][p]) with k = t * C + c over the 25 real
// taps and C input channels, p = (n, h, w) over the whole batch, A the weight as stored
// (weight[t][c][o], so a tile of A is a coalesced read) and B gathered on the fly from x at
// tap t's offset (zero outside the image) — no im2col buffer, and each input element is read
// for both DEE branches at once. ReLU is applied in the epilogue.
//   fp32: SIMT tiles of 64 outputs x 64 positions, 256 threads, 4 x 4 results per thread.
//   fp16 / bf16: tensor cores (WMMA 16x16x16, fp32 accumulation), 64 x 64 tiles, 4 warps of
//   32 x 32; the output is written in the input's precision.
// Any batch size and spatial size; NCHW contiguous input.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>

#include "dee_conv.h"

namespace {

constexpr int kTile = 64;  // outputs and positions per block
constexpr int kDepth = 16;  // k (tap, channel) per step

__constant__ int2 kTapOffsets[deen::kDeeTaps];  // (dy, dx)

struct Problem {
  int64_t n, c, h, w, o;
  __device__ int64_t positions() const { return n * h * w; }
  __device__ int64_t depth() const { return deen::kDeeTaps * c; }
};

template <typename T>
__device__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __half from_float<__half>(float v) {
  return __float2half(v);
}
template <>
__device__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

// B[k][p]: input channel c at tap t, shifted, for position p; zero outside the image.
template <typename T>
__device__ T gather_input(const T* x, const Problem& s, int64_t k, int64_t p) {
  if (k >= s.depth() || p >= s.positions()) return from_float<T>(0.0f);
  const int64_t t = k / s.c, c = k % s.c;
  const int64_t hw = s.h * s.w, image = p / hw, rest = p % hw;
  const int64_t row = rest / s.w + kTapOffsets[t].x, col = rest % s.w + kTapOffsets[t].y;
  if (row < 0 || row >= s.h || col < 0 || col >= s.w) return from_float<T>(0.0f);
  return x[((image * s.c + c) * s.h + row) * s.w + col];
}

template <typename T>
__device__ T load_weight(const T* weight, const Problem& s, int64_t k, int64_t o) {
  return (k < s.depth() && o < s.o) ? weight[k * s.o + o] : from_float<T>(0.0f);
}

template <typename T>
__device__ void store_output(T* y, const Problem& s, int64_t o, int64_t p, float value) {
  if (o >= s.o || p >= s.positions()) return;
  const int64_t hw = s.h * s.w, image = p / hw, rest = p % hw;
  y[(image * s.o + o) * hw + rest] = from_float<T>(fmaxf(value, 0.0f));
}

// Stage one k-slice of A (weights, kDepth x kTile outputs) and B (gathered inputs, kDepth x
// kTile positions) in shared memory, spread over the block's threads.
template <typename T>
__device__ void stage_tiles(T (&a)[kDepth][kTile], T (&b)[kDepth][kTile], const T* x,
                            const T* weight, const Problem& s, int64_t k0, int64_t o0,
                            int64_t p0) {
  for (int i = threadIdx.x; i < kDepth * kTile; i += blockDim.x) {
    const int kk = i / kTile, j = i % kTile;
    a[kk][j] = load_weight(weight, s, k0 + kk, o0 + j);
    b[kk][j] = gather_input(x, s, k0 + kk, p0 + j);
  }
}

__global__ void __launch_bounds__(256) dee_conv_fp32(const float* __restrict__ x,
                                                     const float* __restrict__ weight,
                                                     float* __restrict__ y, Problem s) {
  __shared__ float a[kDepth][kTile];
  __shared__ float b[kDepth][kTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t o0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < s.depth(); k0 += kDepth) {
    stage_tiles(a, b, x, weight, s, k0, o0, p0);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        av[i] = a[kk][ty * 4 + i];
        bv[i] = b[kk][tx + 16 * i];  // strided so a warp's reads of b are conflict-free
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) store_output(y, s, o0 + ty * 4 + i, p0 + tx + 16 * j, acc[i][j]);
}

// Tensor-core path: each of 4 warps owns a 32 x 32 corner of the 64 x 64 tile.
template <typename T>
__global__ void __launch_bounds__(128) dee_conv_mma(const T* __restrict__ x,
                                                    const T* __restrict__ weight,
                                                    T* __restrict__ y, Problem s) {
  using namespace nvcuda;
  __shared__ __align__(32) T a[kDepth][kTile];  // A^T: column-major A with ldm = kTile
  __shared__ __align__(32) T b[kDepth][kTile];  // B: row-major with ldm = kTile
  __shared__ __align__(32) float out[kTile][kTile];
  const int tid = threadIdx.x, warp = tid / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int64_t o0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kTile;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  for (int64_t k0 = 0; k0 < s.depth(); k0 += kDepth) {
    stage_tiles(a, b, x, weight, s, k0, o0, p0);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> fa[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb[2];
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &a[0][wm + 16 * i], kTile);
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &b[0][wn + 16 * j], kTile);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&out[wm + 16 * i][wn + 16 * j], acc[i][j], kTile,
                              wmma::mem_row_major);
  __syncthreads();
  for (int i = tid; i < kTile * kTile; i += 128) {
    const int m = i / kTile, n = i % kTile;
    store_output(y, s, o0 + m, p0 + n, out[m][n]);
  }
}

// Constant memory is per device: upload the tap table once on each device used.
cudaError_t upload_taps() {
  static uint64_t uploaded = 0;  // bit d: device d has the table
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status != cudaSuccess || (device < 64 && (uploaded >> device) & 1)) return status;
  int2 taps[deen::kDeeTaps];
  for (int t = 0; t < deen::kDeeTaps; ++t) deen::dee_tap_offset(t, &taps[t].x, &taps[t].y);
  status = cudaMemcpyToSymbol(kTapOffsets, taps, sizeof taps);
  if (status == cudaSuccess && device < 64) uploaded |= uint64_t{1} << device;
  return status;
}

}  // namespace

// dtype: 0 float32, 1 float16, 2 bfloat16 (x, weight and y alike). Returns a cudaError_t
// value: 0 on success.
extern "C" __attribute__((visibility("default"))) int deen_dee_conv_cuda(
    const void* x, const void* weight, void* y, int64_t n, int64_t c, int64_t h, int64_t w,
    int64_t o, int dtype, void* stream) {
  if (n < 0 || c <= 0 || h <= 0 || w <= 0 || o <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const cudaError_t uploaded = upload_taps();
  if (uploaded != cudaSuccess) return uploaded;
  const Problem s{n, c, h, w, o};
  const int64_t positions = n * h * w;
  const dim3 grid(static_cast<unsigned>((positions + kTile - 1) / kTile),
                  static_cast<unsigned>((o + kTile - 1) / kTile));
  auto queue = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case 0:
      dee_conv_fp32<<<grid, 256, 0, queue>>>(static_cast<const float*>(x),
                                            static_cast<const float*>(weight),
                                            static_cast<float*>(y), s);
      break;
    case 1:
      dee_conv_mma<__half><<<grid, 128, 0, queue>>>(static_cast<const __half*>(x),
                                                    static_cast<const __half*>(weight),
                                                    static_cast<__half*>(y), s);
      break;
    case 2:
      dee_conv_mma<__nv_bfloat16><<<grid, 128, 0, queue>>>(
          static_cast<const __nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(weight),
          static_cast<__nv_bfloat16*>(y), s);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}
