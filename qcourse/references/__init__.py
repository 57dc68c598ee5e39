"""The production libraries the course runs for real and cross-checks its own code against,
one module per library. Each imports its library only inside its functions, so importing a
method module (``qcourse.gptq``, ``qcourse.awq``, ...) never imports any of them.

    llm_compressor      llm-compressor's GPTQModifier (the maintained successor of AutoGPTQ)
    autoawq             AutoAWQ 0.2.9 (deprecated; runs on the CPU with one fix)
    bnb                 bitsandbytes: LLM.int8() and NF4 through transformers' BitsAndBytesConfig
    torchao             torchao: QAT prepare/convert (``torchao.qat``), the MX, NVFP4 and scaled
                        FP8 tensors (``torchao.mx``)
    peft_qlora          peft's LoRA on a bitsandbytes NF4 base (QLoRA as people run it)
    hqq_lib             the hqq package's quantizer and HQQLinear, transformers' HQQ-backed
                        ``QuantizedCache``
    onnx_runtime        ONNX export, ONNX Runtime's INT8 and INT4 quantizers, sessions
    checkpoint_loaders  transformers and compressed-tensors loading GPTQ and compressed-tensors
                        checkpoints (and what the GPTQ loader requires)
    lm_eval             lm-evaluation-harness on the course's tasks, for a model in memory or
                        llama.cpp

llama.cpp is the definition of the GGUF format and the runtime that serves it, so its wrappers
live with the format: :mod:`qcourse.gguf.ggml` (its quantizers, through ctypes) and
:mod:`qcourse.gguf.llamacpp` (quantize, run, score GGUF files).
"""
