// W4A16 GEMV in plain CUDA C: y[m, n] = sum_k x[m, k] * W'[n, k], for the decode case (few rows).
//
// Same packed layout as the Triton kernel (qcourse/kernels/layout.py):
//   qweight int32 [K/8, N]: word qweight[i, n] holds q[n, 8i + j] in bits [4j, 4j + 4), j = 0..7
//   scales, zeros [K/g, N]: W'[n, k] = (q[n, k] - zeros[k / g, n]) * scales[k / g, n]
//
// One thread computes one output n over one slice of K (split-K); the slices of a column are
// added with atomicAdd into a float32 y. Threads of a warp own neighbouring n, so each step of
// the loop reads 32 neighbouring words: one coalesced 128-byte load for 256 weights.
// This file needs only the CUDA toolkit (no torch headers); torch_binding.cu wraps it.
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace qcourse {

__host__ __device__ inline float to_float(float v) { return v; }
__host__ __device__ inline float to_float(__half v) { return __half2float(v); }
__host__ __device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Round a float to the activation type T and back: the weight the Triton kernel multiplies.
__host__ __device__ inline float round_to(float v, float) { return v; }
__host__ __device__ inline float round_to(float v, __half) { return __half2float(__float2half_rn(v)); }
__host__ __device__ inline float round_to(float v, __nv_bfloat16) {
    return __bfloat162float(__float2bfloat16_rn(v));
}

// Partial dot product of row x (length K) with column n of W', over word rows [word_begin, word_end).
// __host__ too, so the arithmetic can be tested on a machine without a GPU.
template <typename T>
__host__ __device__ inline float column_partial_sum(const T* x, const int32_t* qweight,
                                                    const T* scales, const T* zeros, int n, int N,
                                                    int group_size, int word_begin, int word_end) {
    float acc = 0.0f;
    for (int i = word_begin; i < word_end; ++i) {
        const uint32_t word = static_cast<uint32_t>(qweight[static_cast<size_t>(i) * N + n]);
        const int group = i * 8 / group_size;               // group_size % 8 == 0: one group per word
        const float scale = to_float(scales[static_cast<size_t>(group) * N + n]);
        const float zero = to_float(zeros[static_cast<size_t>(group) * N + n]);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float q = static_cast<float>((word >> (4 * j)) & 0xFu);  // nibble j = input 8i + j
            const float w = round_to((q - zero) * scale, T());             // W' = (q - zero) * scale
            acc += to_float(x[8 * i + j]) * w;
        }
    }
    return acc;
}

// grid: (ceil(N / blockDim.x), split_k, M); y must be zeroed before the launch.
template <typename T>
__global__ void w4a16_gemv_kernel(const T* __restrict__ x, const int32_t* __restrict__ qweight,
                                  const T* __restrict__ scales, const T* __restrict__ zeros,
                                  float* __restrict__ y, int N, int K, int group_size,
                                  int words_per_split) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    const int m = blockIdx.z;
    const int word_begin = blockIdx.y * words_per_split;
    const int word_end = min(word_begin + words_per_split, K / 8);
    if (n >= N || word_begin >= word_end) return;
    const float partial = column_partial_sum(x + static_cast<size_t>(m) * K, qweight, scales, zeros,
                                             n, N, group_size, word_begin, word_end);
    atomicAdd(&y[static_cast<size_t>(m) * N + n], partial);
}

template <typename T>
cudaError_t launch(const void* x, const int32_t* qweight, const void* scales, const void* zeros,
                   float* y, int M, int N, int K, int group_size, int split_k, cudaStream_t stream) {
    constexpr int threads = 128;
    const int words = K / 8;
    const int words_per_split = (words + split_k - 1) / split_k;
    const dim3 grid((N + threads - 1) / threads, split_k, M);
    w4a16_gemv_kernel<T><<<grid, threads, 0, stream>>>(
        static_cast<const T*>(x), qweight, static_cast<const T*>(scales),
        static_cast<const T*>(zeros), y, N, K, group_size, words_per_split);
    return cudaGetLastError();
}

// dtype: 0 = float16, 1 = bfloat16, 2 = float32 (x, scales and zeros share it).
cudaError_t w4a16_gemv_launch(int dtype, const void* x, const int32_t* qweight, const void* scales,
                              const void* zeros, float* y, int M, int N, int K, int group_size,
                              int split_k, cudaStream_t stream) {
    switch (dtype) {
        case 0: return launch<__half>(x, qweight, scales, zeros, y, M, N, K, group_size, split_k, stream);
        case 1: return launch<__nv_bfloat16>(x, qweight, scales, zeros, y, M, N, K, group_size, split_k, stream);
        case 2: return launch<float>(x, qweight, scales, zeros, y, M, N, K, group_size, split_k, stream);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace qcourse
