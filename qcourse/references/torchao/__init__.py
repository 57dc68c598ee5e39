"""torchao 0.18, the maintained PyTorch quantization library, on the CPU: one module per
feature the course cross-checks against it. torchao is imported only inside their functions.

    qat   quantization-aware training: ``quantize_(model, QATConfig(base, step="prepare"))``,
          train, ``step="convert"`` (``IntxWeightOnlyConfig``, ``Int8DynamicActivationIntxWeightConfig``)
    mx    the MX (MXFP8/6/4) and NVFP4 tensors and the scaled FP8 tensor
"""
