"""`dictsr bench` on the CPU: every treatment timed for both networks, ratios consistent with the timings."""

import json

import pytest
import torch

from dictsr_core.bench import CPU_TREATMENTS, cpu_bf16_supported, main_bench
from dictsr_core.infer import use_bf16


@pytest.fixture(scope="module")
def cpu_bench(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "cpu.json"
    result = main_bench("cpu", json_path=path, quick=True, cpu_size=16)
    return result, json.loads(path.read_text())


def test_cpu_bench_times_each_treatment_for_both_networks(cpu_bench):
    result, written = cpu_bench
    assert written == pytest.approx(result)
    timed = [name for name, options in CPU_TREATMENTS.items()
             if not options.get("compile_mode") and (cpu_bf16_supported() or not options["bf16"])]
    assert "fp32" in timed and ("bf16" in timed) == cpu_bf16_supported()
    for name in timed:
        dictsr, rrdb = result[f"infer_16_{name}_ms"], result[f"rrdb_infer_16_{name}_ms"]
        assert 0 < dictsr < rrdb  # fewer MACs and layers, at any treatment
        assert result[f"speedup_16_{name}"] == pytest.approx(rrdb / dictsr)
    assert "infer_16_fp32_compiled_ms" not in result  # --quick skips compiling
    # the headline is each network at its own fastest treatment
    assert result["infer_16_ms"] == min(result[f"infer_16_{n}_ms"] for n in timed)
    assert result["rrdb_infer_16_ms"] == min(result[f"rrdb_infer_16_{n}_ms"] for n in timed)
    assert result["infer_16_ms"] == result[f"infer_16_{result['best_treatment']}_ms"]
    assert result["speedup_16"] == pytest.approx(result["rrdb_infer_16_ms"] / result["infer_16_ms"])
    # paper-style counts: DictSR well under half of RRDBNet's MACs; executed (folded) below the paper count
    assert result["dictsr_gmacs_128"] == pytest.approx(129, rel=0.1)
    assert result["dictsr_gmacs_128_executed"] < result["dictsr_gmacs_128"] < 0.5 * result["rrdb_gmacs_128"]


def test_precision_choice():
    assert use_bf16("auto", "cpu") is False
    assert use_bf16("fp32", torch.device("cpu")) is False
    assert use_bf16("bf16", "cpu") is True
    assert use_bf16("auto", "cuda") is True  # no CUDA needed to decide
    with pytest.raises(ValueError, match="precision: 'fp16' is not one of auto, fp32, bf16"):
        use_bf16("fp16", "cpu")
