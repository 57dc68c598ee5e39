"""The accelerators the course quotes: one table of spec-sheet numbers, each with its source.

    ridge point = peak FLOP/s / peak bandwidth     (FLOP per byte; below it a kernel is
                                                    memory-bound: notebook 07's roofline)

Used by the roofline of :mod:`qcourse.kernels.roofline` and by the cost calculator
(:class:`qcourse.cost.RentedGPU.from_spec`). Every number is the manufacturer's datasheet or
architecture whitepaper (each entry's ``source`` names it and quotes its figures). Tensor
throughput is dense: where a sheet prints it "with sparsity" (marked *), it is halved here.
Memory is as the sheet prints it ("80GB"), counted in GiB as the cost panel does.
"""
from __future__ import annotations

import dataclasses

SPEC_SHEETS_READ = "2026-12-07"   # when the sheets below were last checked, number by number

# NVIDIA's own datasheets (a "*" there marks a figure with 2:4 sparsity; the table keeps the dense
# one, half of it). Memory and bandwidth as printed.
_H100 = ("https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet "
         "(NVIDIA H100 Tensor Core GPU datasheet: SXM 3.35 TB/s, 1,979* FP16 TFLOPS, 3,958* INT8 "
         "TOPS; PCIe 2 TB/s, 1,513*, 3,026*; NVL 94 GB, 3.9 TB/s, 1,671*, 3,341*)")
_H200 = ("https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM: 141 GB, 4.8 TB/s, 1,979* FP16 "
         "TFLOPS, 3,958* INT8 TOPS)")
_A100 = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
         "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf (A100 datasheet: 312 FP16 TFLOPS, 624 "
         "INT8 TOPS; 40GB 1,555 GB/s; 80GB PCIe 1,935 GB/s; 80GB SXM 2,039 GB/s)")
_L40S = ("https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413 (L40S datasheet: 48 GB, "
         "864 GB/s, 362.05 | 733* FP16 TFLOPS, 733 | 1,466* INT8 TOPS)")
_L40 = ("https://www.nvidia.com/en-us/data-center/l40/ (L40 datasheet: 48 GB, 864 GB/s, "
        "181.05 | 362.1* FP16 TFLOPS, 362 | 724* INT8 TOPS)")
_L4 = ("https://www.nvidia.com/en-us/data-center/l4/ (L4 datasheet: 24 GB, 300 GB/s, 242* FP16 "
       "TFLOPS, 485* INT8 TOPS)")
_A10 = ("https://www.nvidia.com/en-us/data-center/products/a10-gpu/ (A10 datasheet: 24 GB, "
        "600 GB/s, 125 | 250* FP16 TFLOPS, 250 | 500* INT8 TOPS)")
_T4 = ("https://www.nvidia.com/en-us/data-center/tesla-t4/ (T4 datasheet: 16 GB, 320 GB/s, "
       "65 FP16 TFLOPS, 130 INT8 TOPS; Turing has no sparsity: as printed)")
_ADA = ("https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf "
        "(NVIDIA Ada GPU Architecture whitepaper, Appendix A: RTX 4090 24 GB, 1,008 GB/s, "
        "165.2 | 330.4* FP16 tensor TFLOPS with FP32 accumulate, 660.6 | 1,321.2* INT8 TOPS)")
_AMPERE = ("https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf "
           "(NVIDIA Ampere GA102 whitepaper: RTX 3090 24 GB, 936 GB/s, 71 | 142* FP16 tensor "
           "TFLOPS with FP32 accumulate, 284 | 568* INT8 TOPS)")


@dataclasses.dataclass(frozen=True)
class GPUSpec:
    """A card's spec sheet: peak DRAM bandwidth (GB/s, 10^9 bytes/s), dense FP16/BF16 and INT8
    tensor-core peaks (TFLOPS, TOPS; FP32 accumulation on GeForce cards, whose sheets also print
    a doubled FP16-accumulate figure), memory (GiB) and the sheet's address and figures."""

    name: str
    bandwidth_gbs: float
    fp16_tflops: float
    int8_tops: float
    source: str
    memory_gib: int

    @property
    def ridge(self) -> float:
        """FLOP per byte above which the card is compute-bound (FP16)."""
        return self.fp16_tflops * 1e12 / (self.bandwidth_gbs * 1e9)

    @property
    def memory_bytes(self) -> int:
        return self.memory_gib * 2**30


# Keys are matched against torch.cuda.get_device_name(), most specific first.
GPUS: dict[str, GPUSpec] = {
    "H100 PCIe": GPUSpec("H100 PCIe", 2000, 756, 1513, _H100, 80),
    "H100 NVL": GPUSpec("H100 NVL", 3900, 835, 1671, _H100, 94),
    "H100": GPUSpec("H100 SXM", 3350, 989, 1979, _H100, 80),
    "H200": GPUSpec("H200 SXM", 4800, 989, 1979, _H200, 141),
    "A100 80GB PCIe": GPUSpec("A100 80GB PCIe", 1935, 312, 624, _A100, 80),
    "A100-SXM4-80GB": GPUSpec("A100 80GB SXM", 2039, 312, 624, _A100, 80),
    "A100": GPUSpec("A100 40GB", 1555, 312, 624, _A100, 40),
    "L40S": GPUSpec("L40S", 864, 362, 733, _L40S, 48),
    "L40": GPUSpec("L40", 864, 181, 362, _L40, 48),
    "L4": GPUSpec("L4", 300, 121, 242, _L4, 24),
    "A10": GPUSpec("A10", 600, 125, 250, _A10, 24),
    "T4": GPUSpec("T4", 320, 65, 130, _T4, 16),
    "RTX 4090": GPUSpec("RTX 4090", 1008, 165, 661, _ADA, 24),
    "RTX 3090": GPUSpec("RTX 3090", 936, 71, 284, _AMPERE, 24),
}


def lookup_gpu(device_name: str) -> GPUSpec | None:
    """The spec-sheet entry for a ``torch.cuda.get_device_name()`` string, or None if unknown."""
    for key, gpu in GPUS.items():
        if key.lower() in device_name.lower():
            return gpu
    return None
