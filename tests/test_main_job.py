import json

from dictsr_core.demo import run_main


def test_main_job_end_to_end_on_the_tiny_profile(tmp_path):
    code = run_main(profile="tiny", data_root=tmp_path / "data", runs_root=tmp_path / "runs", figures_root=tmp_path / "figures")
    assert code == 0
    results = json.loads((tmp_path / "runs" / "tiny" / "results.json").read_text())
    assert results["steps"] == 20
    for method in ("dictsr", "bicubic"):
        assert len(results[method]["images"]) == 2
        assert set(results[method]["summary"]) == {"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "lpips_alex", "lpips_vgg"}
    assert results["bicubic"]["summary"]["psnr_rgb"] > 20  # bicubic of the aim LR against the clean HR
    assert (tmp_path / "figures" / "tiny" / "main_comparison.png").stat().st_size > 10_000
    assert "| dictsr |" in (tmp_path / "runs" / "tiny" / "results.md").read_text()
