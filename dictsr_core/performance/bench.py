"""`dictsr bench`: DictSR against RRDBNet x4 (Real-ESRGAN's generator, built by spandrel without weights),
in one process, on the same inputs, with the same treatment (bf16, channels_last, torch.compile).

Prints and returns the numbers and the DictSR/RRDBNet ratios; nothing here is a pass/fail test.
On the CPU every treatment is timed for both networks; the headline ratio is best against best.
"""

from __future__ import annotations

import contextlib
import copy
import json
import platform
import time
from pathlib import Path

import torch

from dictsr_core.atomic import atomic_write_json, replace_readme_block
from dictsr_core.config import get_config
from dictsr_core.inference.fast import cpu_bf16_supported
from dictsr_core.model import DictSR, DictSRInference
from dictsr_core.performance.cost import as_written, count_macs, train_step_cost
from dictsr_core.performance.rrdbnet import build_rrdbnet


def random_dictsr_inference(checkpoint=None) -> DictSRInference:
    if checkpoint:
        from dictsr_core.training.checkpoint import load_inference_model

        return load_inference_model(checkpoint)[0]
    model = DictSR(get_config("paper").model)
    hr = torch.rand(2, 3, 256, 256)
    from dictsr_core.training.step import downscale_hr

    model.dictionaries.initialize(*model.coupled_embeddings(hr, downscale_hr(hr)))
    return model.inference().eval().folded()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# name -> infer_ms keywords; the compiled ones are skipped with --no-compile / --quick
CPU_TREATMENTS = {
    "fp32": {"bf16": False},
    "fp32_channels_last": {"bf16": False, "channels_last": True},
    "fp32_compiled": {"bf16": False, "compile_mode": "default"},
    "bf16": {"bf16": True},
    "bf16_compiled": {"bf16": True, "compile_mode": "default"},
}


def time_ms(fn, device, warmup: int = 3, iters: int = 10, min_seconds: float = 0.5) -> float:
    """Median wall time of fn() in ms (CUDA: synchronised)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start_all = time.perf_counter()
    while len(times) < iters or (time.perf_counter() - start_all < min_seconds and len(times) < 1000):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def _prepare(module, device, channels_last: bool, compile_mode: str | None):
    module = copy.deepcopy(module).to(device).eval()  # a fresh copy: no treatment leaks into the next one
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    for p in module.parameters():
        p.requires_grad_(False)
    if compile_mode:
        try:
            return torch.compile(module, mode=compile_mode), True
        except Exception as error:  # noqa: BLE001
            print(f"[bench] torch.compile({compile_mode}) unavailable: {error}")
    return module, False


def infer_ms(module, device, batch: int, size: int, bf16: bool, channels_last: bool = False, compile_mode=None) -> float:
    if compile_mode:
        torch._dynamo.reset()  # each treatment compiles afresh, not against another network's cache
    net, compiled = _prepare(module, device, channels_last, compile_mode)
    x = torch.rand(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def run():
        with torch.no_grad(), autocast:
            return net(x)

    try:
        return time_ms(run, device, warmup=5 if compile_mode else 2)
    except Exception as error:  # noqa: BLE001 - compile failures surface at the first call
        if not compiled:
            raise
        print(f"[bench] compiled run failed ({type(error).__name__}: {error}); timing eager instead")
        return infer_ms(module, device, batch, size, bf16, channels_last, None)


def graph_infer_ms(module, device, batch: int, size: int) -> float:
    """bf16, channels_last, the whole forward replayed as one CUDA graph."""
    from dictsr_core.inference.cuda_graphs import CudaGraphModule

    net, _ = _prepare(module, device, True, None)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    graph = CudaGraphModule(net, x)
    return time_ms(lambda: graph(x), device, warmup=3, iters=50)


def train_step(device, compile_model: bool, perceptual: bool = True, preset: str = "paper",
               channels_last: bool | None = None, bf16: bool | None = None, ablation: str | None = None,
               overrides: dict | None = None) -> dict:
    """One training step of a preset's batch (paper: 24 x 256^2 HR + 24 x 64^2 LR; with an ablation's change and
    `--set` overrides); by default bf16 and channels_last on CUDA, fp32 contiguous on the CPU."""
    from dictsr_core.training.step import build_criterion, build_perceptual, downscale_hr, training_objective

    cfg = get_config(preset, ablation, overrides)
    cfg = get_config(preset, ablation, overrides={
        **(overrides or {}), "train.perceptual_weight": (cfg.train.perceptual_weight or 1.0) if perceptual else 0.0})
    torch.manual_seed(0)
    model = DictSR(cfg.model).to(device)
    cl = device.type == "cuda" if channels_last is None else channels_last
    amp = device.type == "cuda" if bf16 is None else bf16
    if cl:
        model = model.to(memory_format=torch.channels_last)
    batch, t = cfg.train.batch_size, cfg.train
    hr = torch.rand(batch, 3, t.hr_crop, t.hr_crop, device=device)
    lr = torch.rand(batch, 3, t.lr_crop, t.lr_crop, device=device)
    if cl:
        hr, lr = hr.contiguous(memory_format=torch.channels_last), lr.contiguous(memory_format=torch.channels_last)
    hr_down = downscale_hr(hr)
    model.dictionaries.initialize(*model.coupled_embeddings(hr, hr_down))
    criterion = build_criterion(cfg, build_perceptual(cfg, device))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, fused=device.type == "cuda")
    objective = training_objective(model, criterion)  # what train() runs (and compiles) per step
    forward = torch.compile(objective) if compile_model else objective

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms = forward(hr, downscale_hr(hr), lr)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        model.dictionaries.tick()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms = time_ms(step, device, warmup=3 if compile_model else 2, iters=10)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"ms": ms, "peak_gb": peak}


CPU_TRAIN_TREATMENTS = {"fp32": {}, "fp32_channels_last": {"channels_last": True}, "bf16": {"bf16": True}}


def cpu_training(preset: str = "cpu") -> dict:
    """The preset's training step on the CPU in each treatment, with and without the LPIPS term: ms, and the
    achieved GFLOP/s (forward + backward FLOPs of cost.train_step_cost) against the conv ceiling's."""
    dev = torch.device("cpu")
    bf16_native = cpu_bf16_supported()
    out = {"train_preset": preset}
    for perceptual in (False, True):
        cfg = get_config(preset)
        cfg = get_config(preset, overrides={"train.perceptual_weight": (cfg.train.perceptual_weight or 1.0) if perceptual else 0.0})
        tag = "perceptual" if perceptual else "l1"
        out[f"train_{tag}_gflop"] = train_step_cost(cfg)["train_step_gflop"]
        for name, options in CPU_TRAIN_TREATMENTS.items():
            if options.get("bf16") and not bf16_native:
                continue
            ms = train_step(dev, compile_model=False, perceptual=perceptual, preset=preset,
                            channels_last=options.get("channels_last", False), bf16=options.get("bf16", False))["ms"]
            out[f"train_{tag}_{name}_ms"] = ms
            out[f"train_{tag}_{name}_gflop_s"] = out[f"train_{tag}_gflop"] / ms * 1e3
            print(f"[bench] {preset} training step, {tag}, {name}: {ms:.1f} ms "
                  f"({out[f'train_{tag}_{name}_gflop_s']:.0f} GFLOP/s)", flush=True)
    out["conv_ceiling_fp32_gflop_s"] = 2 * conv_ceiling_gmacs(bf16=False)
    if bf16_native:
        out["conv_ceiling_bf16_gflop_s"] = 2 * conv_ceiling_gmacs(bf16=True)
    return out


def conv_ceiling_gmacs(bf16: bool) -> float:
    """G multiply-adds per second of one wide conv3x3 (256 channels, 64x64, channels_last): about the most
    this CPU's convolutions reach, so no network of a given MAC count runs faster than MACs / ceiling."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    x = torch.randn(1, 256, 64, 64, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ms = time_ms(lambda: torch.nn.functional.conv2d(x, w, padding=1), torch.device("cpu"))
    return 9 * 256 * 256 * 64 * 64 / ms / 1e6


def cpu_inference(dictsr, rrdb, size: int = 64, compile: bool = True, dictsr_gmacs_128: float | None = None) -> dict:
    """Batch-1 latency at size x size LR for each CPU treatment, both networks; headline: best vs best.
    With DictSR's executed MACs, also the ratio DictSR would reach at the CPU's conv ceiling (its bound)."""
    dev = torch.device("cpu")
    out = {"cpu_bf16_native": cpu_bf16_supported(), "lr_size": size}
    best = {}
    for name, options in CPU_TREATMENTS.items():
        if (options["bf16"] and not out["cpu_bf16_native"]) or (options.get("compile_mode") and not compile):
            continue
        for prefix, net in (("", dictsr), ("rrdb_", rrdb)):
            ms = out[f"{prefix}infer_{size}_{name}_ms"] = infer_ms(net, dev, 1, size, **options)
            if ms < best.get(prefix, (float("inf"), ""))[0]:
                best[prefix] = (ms, name)
            print(f"[bench] {prefix or 'dictsr_'}{name}: {ms:.1f} ms", flush=True)
        out[f"speedup_{size}_{name}"] = out[f"rrdb_infer_{size}_{name}_ms"] / out[f"infer_{size}_{name}_ms"]
    (out[f"infer_{size}_ms"], out["best_treatment"]), (out[f"rrdb_infer_{size}_ms"], out["rrdb_best_treatment"]) = best[""], best["rrdb_"]
    out[f"speedup_{size}"] = out[f"rrdb_infer_{size}_ms"] / out[f"infer_{size}_ms"]  # each network at its fastest
    out.update(ncnn_inference(size))
    if dictsr_gmacs_128:
        out["conv_ceiling_gmac_s"] = conv_ceiling_gmacs(bf16=out["cpu_bf16_native"])
        out[f"ceiling_infer_{size}_ms"] = dictsr_gmacs_128 * (size / 128) ** 2 / out["conv_ceiling_gmac_s"] * 1e3
        out[f"ceiling_speedup_{size}"] = out[f"rrdb_infer_{size}_ms"] / out[f"ceiling_infer_{size}_ms"]
    return out


def ncnn_inference(size: int = 64, name: str = "realesrgan-x4plus") -> dict:
    """What users of Real-ESRGAN run on a CPU: its published ncnn files through the `ncnn` package, batch 1, size x
    size LR, with torch's thread count and ncnn's own defaults (its fp16/bf16 storage where the CPU has it); {} when
    ncnn or the weights are missing (`pip install -e '.[peers]'`, `dictsr weights --peers`)."""
    import numpy as np

    from dictsr_core.peers.ncnn_runner import NcnnUnavailable, ncnn_net, ncnn_super_resolve
    from dictsr_core.peers.pretrained import ncnn_files

    param, binary = ncnn_files(name)
    if not (param.is_file() and binary.is_file()):
        print(f"[bench] ncnn row skipped: {param} missing (`dictsr weights --peers`)", flush=True)
        return {}
    try:
        net = ncnn_net(param, binary, threads=torch.get_num_threads(), fp32=False)
    except NcnnUnavailable as error:
        print(f"[bench] ncnn row skipped: {error}", flush=True)
        return {}
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ms = time_ms(lambda: ncnn_super_resolve(net, image), torch.device("cpu"), warmup=1, iters=3)
    print(f"[bench] ncnn {name}: {ms:.1f} ms", flush=True)
    return {f"ncnn_infer_{size}_ms": ms, "ncnn_model": name}


def run_bench(device: str = "auto", checkpoint=None, compile: bool = True, quick: bool = False, cpu_size: int = 64) -> dict:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    dictsr = random_dictsr_inference(checkpoint)
    rrdb = build_rrdbnet()
    with torch.device("meta"):
        meta_dictsr, meta_rrdb = DictSRInference(dictsr.cfg).folded(), build_rrdbnet()
        x128 = torch.empty(1, 3, 128, 128)
    with as_written(meta_dictsr):
        literal = count_macs(meta_dictsr, x128)
    macs = {
        "dictsr_gmacs_128": literal / 1e9,  # as the paper counts (nearest x2 then conv3x3)
        "dictsr_gmacs_128_executed": count_macs(meta_dictsr, x128) / 1e9,  # upsampling and code stem folded (same function)
        "rrdb_gmacs_128": count_macs(meta_rrdb, x128) / 1e9,
    }
    out = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        **{k: round(v, 2) for k, v in macs.items()},
    }
    if dev.type == "cpu":
        out.update(cpu_inference(dictsr, rrdb, size=cpu_size, compile=compile and not quick,
                                 dictsr_gmacs_128=macs["dictsr_gmacs_128_executed"]))
        out.update(cpu_training("tiny" if quick else "cpu"))
        return out
    for name, net in (("", dictsr), ("rrdb_", rrdb)):
        out[f"{name}infer_b16_fp32_ms"] = infer_ms(net, dev, 16, 128, bf16=False)
        out[f"{name}infer_b16_bf16_eager_ms"] = infer_ms(net, dev, 16, 128, bf16=True, channels_last=True)
        out[f"{name}infer_b1_eager_ms"] = infer_ms(net, dev, 1, 128, bf16=True, channels_last=True)
        try:
            out[f"{name}infer_b1_ms"] = graph_infer_ms(net, dev, 1, 128)
        except Exception as error:  # noqa: BLE001 - report, keep measuring the rest
            print(f"[bench] CUDA graph capture failed ({type(error).__name__}: {error}); batch-1 number is eager")
            out[f"{name}infer_b1_ms"] = out[f"{name}infer_b1_eager_ms"]
        if compile:
            t0 = time.perf_counter()
            out[f"{name}infer_b16_bf16_ms"] = infer_ms(net, dev, 16, 128, bf16=True, channels_last=True, compile_mode="default")
            out[f"{name}compile_s"] = time.perf_counter() - t0
        else:
            out[f"{name}infer_b16_bf16_ms"] = out[f"{name}infer_b16_bf16_eager_ms"]
    out["speedup_b16_bf16"] = out["rrdb_infer_b16_bf16_ms"] / out["infer_b16_bf16_ms"]
    out["speedup_b16_bf16_eager"] = out["rrdb_infer_b16_bf16_eager_ms"] / out["infer_b16_bf16_eager_ms"]
    out["speedup_b1"] = out["rrdb_infer_b1_ms"] / out["infer_b1_ms"]
    out["throughput_b16_images_s"] = 16 / out["infer_b16_bf16_ms"] * 1e3
    out["achieved_tflops_b16"] = 2 * macs["dictsr_gmacs_128_executed"] * 16 / out["infer_b16_bf16_ms"]  # GFLOP/ms = TFLOP/s
    out["rrdb_achieved_tflops_b16"] = 2 * macs["rrdb_gmacs_128"] * 16 / out["rrdb_infer_b16_bf16_ms"]
    out["train_step_tflop"] = train_step_cost(get_config("paper"))["train_step_tflop"]  # achieved TFLOP/s: bench_markdown
    eager = train_step(dev, compile_model=False)
    out["train_step_eager_ms"] = eager["ms"]
    out["train_step_compiled"] = compile and not quick
    if out["train_step_compiled"]:
        compiled = train_step(dev, compile_model=True)
        out["train_step_ms"], out["peak_train_mem_gb"] = compiled["ms"], compiled["peak_gb"]
    else:  # the eager numbers stand in (gpu_session.py replaces them with its compiled run's)
        out["train_step_ms"], out["peak_train_mem_gb"] = eager["ms"], eager["peak_gb"]
    return out


def card_name(result: dict) -> str:
    """'cpu', 'H100', 'H200', ... from a bench result's device string."""
    device = result["device"]
    return "cpu" if device.startswith("cpu") else device.replace("NVIDIA", "").split()[0]


def _ratio_row(label: str, ours, theirs, target: str = "") -> str:
    if ours is None or theirs is None:
        return f"| {label} | - | - | - | {target} |"
    return f"| {label} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.2f}x | {target} |"


def bench_markdown(result: dict) -> str:
    """The README block of one bench result: every timing beside RRDBNet's and the issue's targets."""
    lines = [
        f"`dictsr bench` on {result['device']}, torch {result['torch']}. MACs at 128x128 LR: DictSR "
        f"{result['dictsr_gmacs_128']:.1f} G as the paper counts"
        + (f", {result['dictsr_gmacs_128_executed']:.1f} G executed (upsampling and code stem folded, same function)"
           if "dictsr_gmacs_128_executed" in result else "")
        + f"; RRDBNet {result['rrdb_gmacs_128']:.1f} G. "
        "Written by `dictsr bench --readme`; do not edit.",
        "",
        "| measurement | DictSR (ms) | RRDBNet x4 (ms) | RRDBNet / DictSR | target |",
        "|---|---|---|---|---|",
    ]
    if card_name(result) == "cpu":
        size = result["lr_size"]
        for name in CPU_TREATMENTS:
            if f"infer_{size}_{name}_ms" in result:
                lines.append(_ratio_row(f"batch 1, {size}x{size} LR, {name.replace('_', ' ')}",
                                        result[f"infer_{size}_{name}_ms"], result[f"rrdb_infer_{size}_{name}_ms"]))
        ratio = result[f"speedup_{size}"]
        lines.append(_ratio_row(f"each at its fastest ({result['best_treatment']} / {result['rrdb_best_treatment']})",
                                result[f"infer_{size}_ms"], result[f"rrdb_infer_{size}_ms"],
                                f">= 6x: {'met' if ratio >= 6 else 'not met'}"))
        if f"ncnn_infer_{size}_ms" in result:
            lines.append(_ratio_row(f"what Real-ESRGAN users run: its published {result['ncnn_model']} through ncnn "
                                    "(CPU, same threads), against DictSR's fastest", result[f"infer_{size}_ms"],
                                    result[f"ncnn_infer_{size}_ms"]))
        if f"ceiling_infer_{size}_ms" in result:
            lines.append(_ratio_row(f"bound: DictSR's executed MACs at this CPU's conv ceiling "
                                    f"({result['conv_ceiling_gmac_s']:.0f} GMAC/s), against RRDBNet's fastest",
                                    result[f"ceiling_infer_{size}_ms"], result[f"rrdb_infer_{size}_ms"]))
        return "\n".join(lines) + "\n" + cpu_training_markdown(result)
    rows = (("batch 16, 128x128 LR, fp32", "infer_b16_fp32_ms", ""),
            ("batch 16, bf16, channels_last, eager", "infer_b16_bf16_eager_ms", ""),
            ("batch 16, bf16, channels_last, compiled", "infer_b16_bf16_ms", ">= 5x"),
            ("batch 1, bf16, CUDA graph", "infer_b1_ms", "DictSR <= 0.7 ms"))
    for label, key, target in rows:
        lines.append(_ratio_row(label, result.get(key), result.get(f"rrdb_{key}"), target))
    tflop = result.get("train_step_tflop")

    def step_row(label, ms, target=""):
        achieved = f" ({tflop / ms * 1e3:.0f} TFLOP/s)" if tflop else ""
        return f"| training step, paper batch, {label}{achieved} | {ms:.1f} | - | - | {target} |"

    lines.append(step_row("eager", result["train_step_eager_ms"]))
    if result.get("train_step_source"):
        lines.append(step_row(result["train_step_source"], result["train_step_ms"], "<= 25 ms"))
    elif result.get("train_step_compiled"):
        lines.append(step_row("compiled", result["train_step_ms"], "<= 25 ms"))
    else:
        lines.append("| training step, paper batch, compiled | not measured | - | - | <= 25 ms |")
    lines.append(f"| peak training memory (GB) | {result['peak_train_mem_gb']:.2f} | - | - | <= 10 GB |")
    return "\n".join(lines) + "\n"


def cpu_training_markdown(result: dict) -> str:
    """The `cpu_training` rows: step time and achieved GFLOP/s per treatment, beside the conv ceiling."""
    if "train_preset" not in result:
        return ""
    ceiling = result.get("conv_ceiling_bf16_gflop_s") or result["conv_ceiling_fp32_gflop_s"]
    lines = ["", f"Training step of the `{result['train_preset']}` preset's batch (forward + backward, network and loss; "
             f"L1 + VQ: {result['train_l1_gflop']:.1f} GFLOP, with the LPIPS-VGG term: {result['train_perceptual_gflop']:.1f} "
             f"GFLOP). Conv ceiling: fp32 {result['conv_ceiling_fp32_gflop_s']:.0f} GFLOP/s"
             + (f", bf16 {result['conv_ceiling_bf16_gflop_s']:.0f} GFLOP/s" if "conv_ceiling_bf16_gflop_s" in result else "")
             + ".", "", "| step | treatment | ms | GFLOP/s | of the best conv ceiling |", "|---|---|---|---|---|"]
    for tag, label in (("l1", "L1 + VQ"), ("perceptual", "with LPIPS-VGG")):
        for name in CPU_TRAIN_TREATMENTS:
            if f"train_{tag}_{name}_ms" in result:
                rate = result[f"train_{tag}_{name}_gflop_s"]
                lines.append(f"| {label} | {name.replace('_', ' ')} | {result[f'train_{tag}_{name}_ms']:.1f} | {rate:.0f} | "
                             f"{rate / ceiling:.0%} |")
    return "\n".join(lines) + "\n"


def write_bench_readme(result: dict, readme) -> None:
    card = card_name(result)
    replace_readme_block(readme, f"dictsr bench {card}", bench_markdown(result), f"### Bench: {card}")


def main_bench(device="auto", json_path=None, checkpoint=None, compile=True, quick=False, cpu_size: int = 64,
               readme=None, from_json=None) -> dict:
    """Measure (or, with from_json, reload a measured result), print, and write the JSON / README block."""
    result = json.loads(Path(from_json).read_text()) if from_json else run_bench(device, checkpoint, compile, quick, cpu_size)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:>{width}}: {value:.3f}" if isinstance(value, float) else f"{key:>{width}}: {value}")
    if json_path and not from_json:
        atomic_write_json(json_path, result)
    if readme:
        write_bench_readme(result, readme)
    return result


if __name__ == "__main__":
    print(json.dumps(run_bench(), indent=2))
