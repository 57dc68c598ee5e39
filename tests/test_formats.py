import pytest
import torch

from qcourse import formats


def test_bits_per_weight_counts_scales_and_zeros():
    assert formats.bits_per_weight(4, 128, 16, 16) == 4.25
    assert formats.bits_per_weight(4, 32, 16, 0) == 4.5
    assert formats.bits_per_weight(16) == 16


def test_memory_of_a_7b_model():
    assert formats.memory_bytes(7_000_000_000, 16) == 14_000_000_000
    assert formats.memory_bytes(7_000_000_000, 4, 128, 16, 16) == 7_000_000_000 * 4.25 / 8
    assert formats.memory_bytes(3, 4) == 2  # partial bytes round up


def test_format_table_agrees_with_torch():
    table = {f.name: f for f in formats.format_table()}
    assert table["FP16"].max_value == 65504
    assert table["FP8 E4M3"].max_value == 448
    assert table["BF16"].max_value == pytest.approx(torch.finfo(torch.float32).max, rel=1e-2)
    assert table["INT4"].bytes_per_parameter == 0.5
    assert set(table) >= {"FP32", "FP16", "BF16", "FP8 E4M3", "FP8 E5M2", "INT8", "INT4", "NF4"}


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="group_size"):
        formats.bits_per_weight(4, 0)
    with pytest.raises(ValueError, match="bits"):
        formats.bits_per_weight(0)
    with pytest.raises(ValueError, match="parameters"):
        formats.memory_bytes(-1, 4)


def test_human_bytes_uses_decimal_units():
    assert formats.human_bytes(4.1e9) == "4.10 GB"
    assert formats.human_bytes(512) == "512 B"
