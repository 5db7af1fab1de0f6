"""`dictsr bench` on the CPU: every treatment timed for both networks, ratios consistent with the timings."""

import json

import pytest
import torch

from dictsr_core.inference.fast import cpu_bf16_supported, use_bf16
from dictsr_core.performance.bench import CPU_TREATMENTS, main_bench


@pytest.fixture(scope="module")
def cpu_bench(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "cpu.json"
    result = main_bench("cpu", json_path=path, quick=True, cpu_size=16)
    return result, json.loads(path.read_text())


@pytest.mark.slow
def test_cpu_bench_times_each_treatment_for_both_networks(cpu_bench):
    result, written = cpu_bench
    assert written == pytest.approx(result)
    timed = [name for name, options in CPU_TREATMENTS.items()
             if not options.get("compile_mode") and (cpu_bf16_supported() or not options["bf16"])]
    assert "fp32" in timed and ("bf16" in timed) == cpu_bf16_supported()
    for name in timed:
        dictsr, rrdb = result[f"infer_16_{name}_ms"], result[f"rrdb_infer_16_{name}_ms"]
        assert dictsr > 0 and rrdb > 0  # which is faster is the bench's to print, not a timed test's to assert
        assert result[f"speedup_16_{name}"] == pytest.approx(rrdb / dictsr)
    assert "infer_16_fp32_compiled_ms" not in result  # --quick skips compiling
    # the headline is each network at its own fastest treatment
    assert result["infer_16_ms"] == min(result[f"infer_16_{n}_ms"] for n in timed)
    assert result["rrdb_infer_16_ms"] == min(result[f"rrdb_infer_16_{n}_ms"] for n in timed)
    assert result["infer_16_ms"] == result[f"infer_16_{result['best_treatment']}_ms"]
    assert result["speedup_16"] == pytest.approx(result["rrdb_infer_16_ms"] / result["infer_16_ms"])
    # the bound: DictSR's executed MACs at 16x16 LR, run at the measured conv ceiling
    floor_ms = result["dictsr_gmacs_128_executed"] / 64 / result["conv_ceiling_gmac_s"] * 1e3
    assert result["conv_ceiling_gmac_s"] > 0 and result["ceiling_infer_16_ms"] == pytest.approx(floor_ms, rel=1e-3)
    assert result["ceiling_speedup_16"] == pytest.approx(result["rrdb_infer_16_ms"] / floor_ms, rel=1e-3)
    # the training step of a preset (quick: tiny) in each treatment, its achieved GFLOP/s from the FLOP count
    assert result["train_preset"] == "tiny" and result["train_perceptual_gflop"] > result["train_l1_gflop"] > 0
    for tag in ("l1", "perceptual"):
        ms = result[f"train_{tag}_fp32_ms"]
        assert ms > 0 and result[f"train_{tag}_fp32_gflop_s"] == pytest.approx(result[f"train_{tag}_gflop"] / ms * 1e3)
        assert (f"train_{tag}_bf16_ms" in result) == cpu_bf16_supported()
    assert result["conv_ceiling_fp32_gflop_s"] > 0
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


def test_readme_block_from_a_saved_result(cpu_bench, tmp_path):
    result, _ = cpu_bench
    saved = tmp_path / "cpu.json"
    saved.write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- dictsr bench cpu: start -->\nstale\n<!-- dictsr bench cpu: end -->\n\ntail\n")
    again = main_bench(from_json=saved, readme=readme, json_path=tmp_path / "not-written.json")
    assert again == result and not (tmp_path / "not-written.json").exists()
    text = readme.read_text()
    assert "stale" not in text and text.endswith("\n\ntail\n") and text.count("dictsr bench cpu: start") == 1
    assert f"| batch 1, 16x16 LR, fp32 | {result['infer_16_fp32_ms']:.2f} | {result['rrdb_infer_16_fp32_ms']:.2f} |" in text
    verdict = "met" if result["speedup_16"] >= 6 else "not met"
    assert f"| {result['speedup_16']:.2f}x | >= 6x: {verdict} |" in text
    assert f"conv ceiling ({result['conv_ceiling_gmac_s']:.0f} GMAC/s), against RRDBNet's fastest | {result['ceiling_infer_16_ms']:.2f} |" in text
    assert f"| L1 + VQ | fp32 | {result['train_l1_fp32_ms']:.1f} | {result['train_l1_fp32_gflop_s']:.0f} |" in text


def test_gpu_block_says_what_was_not_measured():
    from dictsr_core.performance.bench import bench_markdown

    quick = {"device": "NVIDIA H200", "torch": "2.11", "dictsr_gmacs_128": 129.1, "rrdb_gmacs_128": 293.7,
             "infer_b16_bf16_ms": 10.0, "rrdb_infer_b16_bf16_ms": 52.0, "train_step_eager_ms": 60.0,
             "train_step_ms": 60.0, "peak_train_mem_gb": 9.0, "train_step_compiled": False}
    text = bench_markdown(quick)
    assert "| batch 16, bf16, channels_last, compiled | 10.00 | 52.00 | 5.20x | >= 5x |" in text
    assert "| batch 1, bf16, CUDA graph | - | - | - |" in text  # absent keys are dashes, not zeros
    assert "| training step, paper batch, compiled | not measured |" in text
    recorded = dict(quick, train_step_ms=24.0, train_step_source="compiled, from the run")
    assert "| training step, paper batch, compiled, from the run | 24.0 |" in bench_markdown(recorded)
    counted = dict(recorded, train_step_tflop=10.2)  # achieved TFLOP/s = TFLOP per step / step time
    text = bench_markdown(counted)
    assert "| training step, paper batch, eager (170 TFLOP/s) | 60.0 |" in text
    assert "| training step, paper batch, compiled, from the run (425 TFLOP/s) | 24.0 |" in text


def test_a_treatment_does_not_leak_into_the_next(tiny_inference):
    from dictsr_core.performance.bench import infer_ms

    weight = tiny_inference.dec_hr[-1].weight
    infer_ms(tiny_inference, torch.device("cpu"), 1, 8, bf16=False, channels_last=True)
    assert tiny_inference.dec_hr[-1].weight is weight and weight.is_contiguous()  # not converted in place
    assert weight.requires_grad == tiny_inference.enc_lr[0].weight.requires_grad
