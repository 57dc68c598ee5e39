"""Roofline arithmetic: bytes a matmul must move, the FLOPs it does, and what real GPUs offer.

A kernel cannot run faster than either roof:

    time >= max(bytes_moved / peak_bandwidth, flops / peak_flops)

``flops / bytes`` is the arithmetic intensity. Below ``peak_flops / peak_bandwidth`` (the ridge
point, ~295 FLOP/byte on an H100 SXM) a kernel is memory-bound: decoding one token (M = 1) does
2 FLOPs per weight and reads every weight once, so it sits far left of the ridge and its speed is
set by how many bytes the weights take. That is what weight-only quantization buys.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    bandwidth_gbs: float          # peak DRAM bandwidth, GB/s (10^9 bytes/s)
    fp16_tflops: float            # dense FP16/BF16 tensor-core peak (no sparsity)
    int8_tops: float              # dense INT8 tensor-core peak (no sparsity)
    source: str

    @property
    def ridge(self) -> float:
        """FLOP per byte above which the card is compute-bound (FP16)."""
        return self.fp16_tflops * 1e12 / (self.bandwidth_gbs * 1e9)


_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_A100 = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
         "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")

# Vendor spec sheets; the sheets print tensor throughput "with sparsity", halved here to dense.
# Keys are matched against torch.cuda.get_device_name(), most specific first.
GPUS: dict[str, GPU] = {
    "H100 PCIe": GPU("H100 PCIe", 2000, 756, 1513, _H100),
    "H100 NVL": GPU("H100 NVL", 3900, 835, 1671, _H100),
    "H100": GPU("H100 SXM", 3350, 989, 1979, _H100),
    "H200": GPU("H200 SXM", 4800, 989, 1979, "https://www.nvidia.com/en-us/data-center/h200/"),
    "A100 80GB PCIe": GPU("A100 80GB PCIe", 1935, 312, 624, _A100),
    "A100-SXM4-80GB": GPU("A100 80GB SXM", 2039, 312, 624, _A100),
    "A100": GPU("A100 40GB", 1555, 312, 624, _A100),
    "L40S": GPU("L40S", 864, 362, 733, "https://www.nvidia.com/en-us/data-center/l40s/"),
    "L40": GPU("L40", 864, 181, 362, "https://www.nvidia.com/en-us/data-center/l40/"),
    "L4": GPU("L4", 300, 121, 242, "https://www.nvidia.com/en-us/data-center/l4/"),
    "A10": GPU("A10", 600, 125, 250, "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"),
    "T4": GPU("T4", 320, 65, 130, "https://www.nvidia.com/en-us/data-center/tesla-t4/"),
}


def lookup_gpu(device_name: str) -> GPU | None:
    """The spec-sheet entry for a ``torch.cuda.get_device_name()`` string, or None if unknown."""
    for key, gpu in GPUS.items():
        if key.lower() in device_name.lower():
            return gpu
    return None


def matmul_flops(m: int, n: int, k: int) -> int:
    """``y[M, N] = x[M, K] · W[N, K]ᵀ``: one multiply and one add per (m, n, k)."""
    return 2 * m * n * k


def bytes_fp16(m: int, n: int, k: int) -> int:
    """Bytes an fp16 linear must move at least once: W (2NK), x (2MK), y (2MN)."""
    return 2 * n * k + 2 * m * k + 2 * m * n


def bytes_w4a16(m: int, n: int, k: int, group_size: int, scale_bytes: int = 2) -> int:
    """W4A16: 4-bit codes (NK/2), a scale and a zero per group ((K/g)·N each), x and y in fp16."""
    return n * k // 2 + 2 * scale_bytes * (k // group_size) * n + 2 * m * k + 2 * m * n


def bytes_w8a8(m: int, n: int, k: int) -> int:
    """W8A8: int8 W (NK) and x (MK), float32 scales (4M + 4N), fp16 y (2MN)."""
    return n * k + m * k + 4 * (m + n) + 2 * m * n


def roofline_seconds(flops: float, nbytes: float, gpu: GPU, int8: bool = False) -> float:
    """The lower bound on time: the slower of moving the bytes and doing the FLOPs."""
    peak = (gpu.int8_tops if int8 else gpu.fp16_tflops) * 1e12
    return max(nbytes / (gpu.bandwidth_gbs * 1e9), flops / peak)
