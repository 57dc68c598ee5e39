// PyTorch binding for w4a16_gemv.cu: checks, allocation and the launch on the stream Python passes
// (torch.cuda.current_stream().cuda_stream), so no c10/cuda header is needed and this file
// compiles against a CPU build of torch too. Python (qcourse/kernels/cuda/__init__.py) has
// already validated shapes and dtypes.
#include <cuda_runtime.h>
#include <torch/extension.h>

namespace qcourse {
cudaError_t w4a16_gemv_launch(int dtype, const void* x, const int32_t* qweight, const void* scales,
                              const void* zeros, float* y, int M, int N, int K, int group_size,
                              int split_k, cudaStream_t stream);
}

torch::Tensor w4a16_gemv(torch::Tensor x, torch::Tensor qweight, torch::Tensor scales,
                         torch::Tensor zeros, int64_t group_size, int64_t split_k,
                         int64_t stream) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous() && x.dim() == 2, "x must be a contiguous CUDA [M, K]");
    TORCH_CHECK(qweight.is_contiguous() && scales.is_contiguous() && zeros.is_contiguous(),
                "qweight, scales and zeros must be contiguous");
    TORCH_CHECK(x.scalar_type() == torch::kHalf || x.scalar_type() == torch::kBFloat16,
                "x must be float16 or bfloat16");
    const int dtype = x.scalar_type() == torch::kHalf ? 0 : 1;
    const int64_t M = x.size(0), K = x.size(1), N = qweight.size(0);
    auto y = torch::zeros({M, N}, x.options().dtype(torch::kFloat32));
    const cudaError_t err = qcourse::w4a16_gemv_launch(
        dtype, x.data_ptr(), qweight.data_ptr<int32_t>(), scales.data_ptr(), zeros.data_ptr(),
        y.data_ptr<float>(), M, N, K, group_size, split_k, reinterpret_cast<cudaStream_t>(stream));
    TORCH_CHECK(err == cudaSuccess, "w4a16_gemv launch failed: ", cudaGetErrorString(err));
    return y;
}
