"""``qcourse export-deploy``: the files for Ollama, vLLM and TensorRT-LLM, checked against the
formats their projects document (the runtimes themselves cannot run here)."""
import json
import re
import shutil
import subprocess

import jinja2
import pytest

from qcourse.deploy import artifacts
from qcourse.paths import TINY_DIR

# Ollama's documented PARAMETER names (docs/modelfile.mdx, "Valid Parameters and Values")
OLLAMA_PARAMETERS = {"num_ctx", "repeat_last_n", "repeat_penalty", "temperature", "seed", "stop",
                     "num_predict", "top_k", "top_p", "min_p", "draft_num_predict"}
CONVERSATIONS = [
    [{"role": "user", "content": "Open a file."}],
    [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Sort it"},
     {"role": "assistant", "content": "sorted(x)"}, {"role": "user", "content": "In place?"}],
]


def render_go(template: str, messages: list[dict]) -> str:
    """The subset of Go's text/template the Modelfile uses: ``{{- range .Messages }} ...
    {{ end }}`` with ``{{ .Role }}`` and ``{{ .Content }}`` inside (``{{-`` trims the
    whitespace before it)."""
    match = re.fullmatch(r"\{\{- range \.Messages \}\}(.*?)\{\{ end \}\}(.*)", template, re.S)
    assert match, f"unexpected template: {template!r}"
    body, tail = match.groups()
    out = "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                  for m in messages)
    assert "{{" not in out + tail
    return out + tail


def render_jinja(template: str, messages: list[dict]) -> str:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)   # as transformers renders
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def test_the_chat_template_constant_is_the_models():
    config = json.loads((TINY_DIR / "tokenizer_config.json").read_text())
    assert config["chat_template"] == artifacts.QCOURSE_CHAT_TEMPLATE


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_the_ollama_template_renders_like_the_jinja_one(messages):
    expected = render_jinja(artifacts.QCOURSE_CHAT_TEMPLATE, messages)
    assert render_go(artifacts.QCOURSE_OLLAMA_TEMPLATE, messages) == expected
    assert expected.endswith("\nassistant:")


def test_modelfile_without_a_known_template_leaves_it_to_ollama():
    text = artifacts.ollama_modelfile("m.gguf", "{{ messages }}", "</s>", 2048)
    assert "TEMPLATE" not in text.replace("No TEMPLATE", "") and "FROM ./m.gguf" in text


def test_checkpoint_method(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        artifacts.checkpoint_method(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config":
                                                      {"quant_method": "compressed-tensors"}}))
    assert artifacts.checkpoint_method(tmp_path) == "compressed-tensors"
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config":
                                                      {"quant_method": "bitsandbytes"}}))
    with pytest.raises(ValueError, match="bitsandbytes"):
        artifacts.checkpoint_method(tmp_path)


def test_the_vllm_files_use_todays_command():
    script = artifacts.vllm_serve_script("gptq", 512)
    assert "vllm serve \"$CHECKPOINT\" --quantization gptq --max-model-len 512" in script
    assert "python -m vllm" not in script and "openai_compatible_server" not in script
    compile(artifacts.vllm_client("compressed-tensors", 512), "client.py", "exec")
    assert 'quantization="compressed-tensors"' in artifacts.vllm_client("compressed-tensors", 512)
    readme = artifacts.vllm_readme("gptq")
    assert "--tensor-parallel-size 2" in readme and "--data-parallel-size" in readme
    assert "proxy_buffering off" in artifacts.NGINX_CONF


def test_the_tensorrt_note_names_each_mode_and_its_gpu():
    note = artifacts.trt_readme()
    for mode, gpu in (("FP8", "Ada (SM 8.9)"), ("NVFP4", "Blackwell (SM 10.0)"),
                      ("INT4 AWQ", "Ampere (SM 8.0)")):
        assert re.search(rf"\| {re.escape(mode)}[^\n]*\| {re.escape(gpu)}", note), mode
    for folder in ("ensemble/", "preprocessing/", "tensorrt_llm/", "postprocessing/"):
        assert folder in note
    assert artifacts.SOURCES["modelopt_support_matrix"] in note and "trtllm-serve" in note


@pytest.mark.slow
def test_export_deploy_writes_checked_files(tmp_path, tiny):
    from qcourse import models
    from qcourse.gptq_checkpoint import save_gptq_checkpoint
    from qcourse.layers import QuantLinear

    import copy
    model = copy.deepcopy(tiny[0])
    for name, linear in models.linear_layers(model).items():
        models.set_module(model, name, QuantLinear.from_float(linear, 4, 128))
    save_gptq_checkpoint(model, tmp_path / "gptq", tiny[1])
    out = tmp_path / "deploy"
    written = artifacts.export_deploy(out, checkpoint=tmp_path / "gptq")
    assert all(p.exists() for p in written)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["vllm_quantization"] == "gptq" and "vllm/serve.sh" in manifest["files"]

    modelfile = (out / "ollama" / "Modelfile").read_text().splitlines()
    instructions = [line for line in modelfile if line and not line.startswith("#")]
    source = [line for line in instructions if line.startswith("FROM ")]
    assert len(source) == 1 and (out / "ollama" / source[0][7:]).read_bytes()[:4] == b"GGUF"
    for line in instructions:
        if line.startswith("PARAMETER"):
            assert line.split()[1] in OLLAMA_PARAMETERS, line
    assert 'PARAMETER stop "<|endoftext|>"' in instructions and "PARAMETER num_ctx 512" in instructions
    text = "\n".join(modelfile)
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert template == artifacts.QCOURSE_OLLAMA_TEMPLATE

    assert (out / "vllm" / "checkpoint" / "config.json").exists()
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", str(out / "vllm" / "serve.sh")]).returncode == 0


@pytest.mark.slow
def test_the_cli_writes_them_and_reports_bad_input(tmp_path, capsys):
    from qcourse.cli import main

    assert main(["export-deploy", str(tmp_path / "out")]) == 0
    assert "ollama/Modelfile" in capsys.readouterr().out
    assert main(["export-deploy", str(tmp_path / "out2"), "--checkpoint", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
