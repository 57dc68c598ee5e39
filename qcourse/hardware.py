"""The accelerators the course quotes: one table of spec-sheet numbers, each with its source.

    ridge point = peak FLOP/s / peak bandwidth     (FLOP per byte; below it a kernel is
                                                    memory-bound: notebook 07's roofline)

Used by the roofline of :mod:`qcourse.kernels.roofline` and by the cost calculator
(:class:`qcourse.cost.RentedGPU.from_spec`). Tensor throughput is dense: the sheets print it
"with sparsity", halved here. Memory is as the sheet prints it ("80GB"), counted in GiB as the
cost panel does.
"""
from __future__ import annotations

import dataclasses

SPEC_SHEETS_READ = "2026-11-27"   # when the sheets below were read (notebook 09 quotes the H100's)

_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_A100 = ("https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
         "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")


@dataclasses.dataclass(frozen=True)
class GPUSpec:
    """A card's spec sheet: peak DRAM bandwidth (GB/s, 10^9 bytes/s), dense FP16/BF16 and INT8
    tensor-core peaks (TFLOPS, TOPS), memory (GiB) and the sheet's address."""

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
    "H200": GPUSpec("H200 SXM", 4800, 989, 1979, "https://www.nvidia.com/en-us/data-center/h200/",
                    141),
    "A100 80GB PCIe": GPUSpec("A100 80GB PCIe", 1935, 312, 624, _A100, 80),
    "A100-SXM4-80GB": GPUSpec("A100 80GB SXM", 2039, 312, 624, _A100, 80),
    "A100": GPUSpec("A100 40GB", 1555, 312, 624, _A100, 40),
    "L40S": GPUSpec("L40S", 864, 362, 733, "https://www.nvidia.com/en-us/data-center/l40s/", 48),
    "L40": GPUSpec("L40", 864, 181, 362, "https://www.nvidia.com/en-us/data-center/l40/", 48),
    "L4": GPUSpec("L4", 300, 121, 242, "https://www.nvidia.com/en-us/data-center/l4/", 24),
    "A10": GPUSpec("A10", 600, 125, 250,
                   "https://www.nvidia.com/en-us/data-center/products/a10-gpu/", 24),
    "T4": GPUSpec("T4", 320, 65, 130, "https://www.nvidia.com/en-us/data-center/tesla-t4/", 16),
}


def lookup_gpu(device_name: str) -> GPUSpec | None:
    """The spec-sheet entry for a ``torch.cuda.get_device_name()`` string, or None if unknown."""
    for key, gpu in GPUS.items():
        if key.lower() in device_name.lower():
            return gpu
    return None
