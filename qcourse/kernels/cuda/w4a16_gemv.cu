// W4A16 GEMV in CUDA C: y[m, n] = sum_k x[m, k] * W'[n, k], for decoding (one or a few rows of x).
//
// Layout (qcourse/kernels/layout.py), the same as the Triton kernels':
//   qweight int32 [N, K/8]: row n = output n's codes along K; word i holds q[n, 8i + j] in bits
//                           [4j, 4j + 4), j = 0..7
//   scales, zeros [K/g, N]: W'[n, k] = (q[n, k] - zeros[k / g, n]) * scales[k / g, n]
//
// Work: one warp computes one output n (for up to kRows rows of x) over one slice of K
// (blockIdx.y, "split-K"). Lane l takes the chunks c = l, l + 32, ... of 32 consecutive inputs:
//
//   row n of qweight:  | chunk 0 | chunk 1 | ... | chunk 31 | chunk 32 | ...
//                        lane 0    lane 1          lane 31    lane 0      (16 bytes each)
//
// * a chunk is 4 words = one 128-bit load, and the 32 lanes' loads are 512 contiguous bytes;
// * the group size is a multiple of 32, so a chunk needs one scale and one zero;
// * dequantization runs on pairs of weights (half2 / bfloat162: two per instruction);
// * each lane sums its products in float32, then the warp adds its 32 partial sums with
//   shuffles (a warp reduction) and lane 0 adds the total into y (atomicAdd: K slices meet there).
//
// The per-lane arithmetic (lane_sums) is __host__ __device__, so the tests compile it with nvcc
// and run it on a CPU. This file needs only the CUDA toolkit; torch_binding.cu wraps it.
#include <cstdint>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace qcourse {

constexpr int kWarp = 32;           // lanes per warp
constexpr int kWarpsPerBlock = 4;   // a block computes 4 neighbouring outputs
constexpr int kRows = 8;            // rows of x per warp: each dequantized chunk serves all of them
constexpr int kChunk = 32;          // inputs per 128-bit load (4 words of 8 codes)

// Two activations of type T side by side, and the "magic number" that turns a 4-bit code into a
// number without a conversion instruction: OR-ing q (0..15) into the low mantissa bits of 1024.0
// (fp16, 10 mantissa bits) or of 128.0 (bf16, 7 bits) gives exactly 1024 + q or 128 + q.
template <typename T> struct Pair;
template <> struct Pair<__half> {
    using type = __half2;
    static constexpr uint32_t kMagicBits = 0x64006400u;  // 1024.0 in both halves
    static constexpr float kMagic = 1024.0f;
    __host__ __device__ static type make(__half a, __half b) { return __halves2half2(a, b); }
    __host__ __device__ static float2 to_float2(type v) { return __half22float2(v); }
    __host__ __device__ static __half from_float(float v) { return __float2half_rn(v); }
    __host__ __device__ static float to_float(__half v) { return __half2float(v); }
};
template <> struct Pair<__nv_bfloat16> {
    using type = __nv_bfloat162;
    static constexpr uint32_t kMagicBits = 0x43004300u;  // 128.0 in both halves
    static constexpr float kMagic = 128.0f;
    __host__ __device__ static type make(__nv_bfloat16 a, __nv_bfloat16 b) { return __halves2bfloat162(a, b); }
    __host__ __device__ static float2 to_float2(type v) { return __bfloat1622float2(v); }
    __host__ __device__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
    __host__ __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
};

template <typename P>
__host__ __device__ inline P bits_as(uint32_t bits) {
    P pair;
    memcpy(&pair, &bits, sizeof(pair));
    return pair;
}

// One lane's partial sums for rows 0..rows-1 of x (row stride K) and output n, over the chunks
// c_first, c_first + c_step, ... < c_end. row_words points at row n of qweight.
template <typename T>
__host__ __device__ inline void lane_sums(const T* x, int rows, int K, const int32_t* row_words,
                                          const T* scales, const T* zeros, int n, int N,
                                          int group_size, int c_first, int c_end, int c_step,
                                          float (&acc)[kRows]) {
    using P = Pair<T>;
    using T2 = typename P::type;
    for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
    for (int c = c_first; c < c_end; c += c_step) {
        const uint4 loaded = reinterpret_cast<const uint4*>(row_words)[c];  // 128 bits: 32 codes
        uint32_t words[4];
        memcpy(words, &loaded, sizeof(words));
        const size_t meta = static_cast<size_t>(c * kChunk / group_size) * N + n;
        const T2 scale2 = P::make(scales[meta], scales[meta]);
        const T zero_plus_magic = P::from_float(P::kMagic + P::to_float(zeros[meta]));  // exact
        const T2 zero2 = P::make(zero_plus_magic, zero_plus_magic);
        T2 w[16];  // w[4i + j] = (W'[32c + 8i + j], W'[32c + 8i + j + 4])
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {  // nibbles j and j + 4 of word i, one in each half
                const uint32_t bits = ((words[i] >> (4 * j)) & 0x000F000Fu) | P::kMagicBits;
                w[4 * i + j] = __hmul2(__hsub2(bits_as<T2>(bits), zero2), scale2);  // (q - z) * s
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            if (r >= rows) break;
            T xs[kChunk];                                          // the chunk's 32 inputs of row r
            const uint4* x4 = reinterpret_cast<const uint4*>(x + static_cast<size_t>(r) * K +
                                                             static_cast<size_t>(c) * kChunk);
#pragma unroll
            for (int v = 0; v < kChunk * sizeof(T) / 16; ++v) {   // 128-bit loads
                const uint4 part = x4[v];
                memcpy(reinterpret_cast<char*>(xs) + 16 * v, &part, 16);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float2 wf = P::to_float2(w[4 * i + j]);
                    const float2 xf = P::to_float2(P::make(xs[8 * i + j], xs[8 * i + j + 4]));
                    acc[r] = fmaf(wf.x, xf.x, fmaf(wf.y, xf.y, acc[r]));
                }
            }
        }
    }
}

// grid: (ceil(N / kWarpsPerBlock), split_k, ceil(M / kRows)); block: (kWarp, kWarpsPerBlock).
// y (float32) must be zeroed before the launch.
template <typename T>
__global__ void w4a16_gemv_kernel(const T* __restrict__ x, const int32_t* __restrict__ qweight,
                                  const T* __restrict__ scales, const T* __restrict__ zeros,
                                  float* __restrict__ y, int M, int N, int K, int group_size,
                                  int chunks_per_split) {
    const int lane = threadIdx.x;
    const int n = blockIdx.x * kWarpsPerBlock + threadIdx.y;
    if (n >= N) return;                                            // the whole warp leaves
    const int m0 = blockIdx.z * kRows;
    const int rows = min(kRows, M - m0);
    const int c_begin = blockIdx.y * chunks_per_split;
    const int c_end = min(c_begin + chunks_per_split, K / kChunk);
    float acc[kRows];
    lane_sums(x + static_cast<size_t>(m0) * K, rows, K, qweight + static_cast<size_t>(n) * (K / 8),
              scales, zeros, n, N, group_size, c_begin + lane, c_end, kWarp, acc);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        float sum = acc[r];
        for (int offset = kWarp / 2; offset > 0; offset /= 2)   // warp reduction: 5 shuffles
            sum += __shfl_xor_sync(0xffffffffu, sum, offset);
        if (lane == 0 && r < rows) atomicAdd(&y[static_cast<size_t>(m0 + r) * N + n], sum);
    }
}

template <typename T>
cudaError_t launch(const void* x, const int32_t* qweight, const void* scales, const void* zeros,
                   float* y, int M, int N, int K, int group_size, int split_k, cudaStream_t stream) {
    const int chunks = K / kChunk;
    const int chunks_per_split = (chunks + split_k - 1) / split_k;
    const dim3 grid((N + kWarpsPerBlock - 1) / kWarpsPerBlock, split_k, (M + kRows - 1) / kRows);
    const dim3 block(kWarp, kWarpsPerBlock);
    w4a16_gemv_kernel<T><<<grid, block, 0, stream>>>(
        static_cast<const T*>(x), qweight, static_cast<const T*>(scales),
        static_cast<const T*>(zeros), y, M, N, K, group_size, chunks_per_split);
    return cudaGetLastError();
}

// dtype: 0 = float16, 1 = bfloat16 (x, scales and zeros share it).
cudaError_t w4a16_gemv_launch(int dtype, const void* x, const int32_t* qweight, const void* scales,
                              const void* zeros, float* y, int M, int N, int K, int group_size,
                              int split_k, cudaStream_t stream) {
    switch (dtype) {
        case 0: return launch<__half>(x, qweight, scales, zeros, y, M, N, K, group_size, split_k, stream);
        case 1: return launch<__nv_bfloat16>(x, qweight, scales, zeros, y, M, N, K, group_size, split_k, stream);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace qcourse
