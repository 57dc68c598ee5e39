"""The production libraries the course runs for real and cross-checks its own code against,
one module per library. Each imports its library only inside its functions, so importing a
method module (``qcourse.gptq``, ``qcourse.awq``, ...) never imports any of them.

    llm_compressor   llm-compressor's GPTQModifier (the maintained successor of AutoGPTQ)
    autoawq          AutoAWQ 0.2.9 (deprecated; runs on the CPU with one fix)
    bnb              bitsandbytes: LLM.int8() and NF4 through transformers' BitsAndBytesConfig

llama.cpp is the definition of the GGUF format and the runtime that serves it, so its wrappers
live with the format: :mod:`qcourse.gguf.ggml` (its quantizers, through ctypes) and
:mod:`qcourse.gguf.llamacpp` (quantize, run, score GGUF files).
"""
