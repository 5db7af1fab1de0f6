"""The published peers: the ncnn reader on hand-made files, the converted PyTorch networks against the ncnn files as
they ship (a stored reference crop made by ncnn), tiling, and the CLI's --method."""

from __future__ import annotations

import io
import struct
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dictsr_core.peers.ncnn_weights import FP16_TAG, NcnnFormatError, parse_param, read_bin, rrdbnet_state_dict

REFERENCE = Path(__file__).parent / "data" / "peers"
PEERS = ("realesrgan-x4plus", "realsr-df2k")


# ---------------------------------------------------------------- the ncnn reader on hand-made files

def _write_pair(tmp_path, layers, extra_bytes=b"", kinds=None):
    """A .param / .bin of Convolution layers [(out, in, k, weight array or None, bias array or None, fp16)]."""
    lines = ["7767517", f"{len(layers) + 1} {len(layers) + 1}", "Input in 0 1 data"]
    blob = b""
    for i, (out, cin, k, weight, bias, half) in enumerate(layers):
        kind = (kinds or {}).get(i, "Convolution")
        lines.append(f"{kind} conv{i} 1 1 b{i} b{i + 1} 0={out} 1={k} 5={int(bias is not None)} 6={out * cin * k * k}")
        if half:
            data = weight.astype("<f2").tobytes()
            blob += struct.pack("<I", FP16_TAG) + data + b"\0" * ((-len(data)) % 4)
        else:
            blob += struct.pack("<I", 0) + weight.astype("<f4").tobytes()
        if bias is not None:
            blob += bias.astype("<f4").tobytes()
    param, binary = tmp_path / "net.param", tmp_path / "net.bin"
    param.write_text("\n".join(lines) + "\n")
    binary.write_bytes(blob + extra_bytes)
    return param, binary


def test_the_reader_gives_back_fp32_and_fp16_weights_with_their_biases(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    w2 = rng.normal(size=(3, 4, 1, 1)).astype(np.float16).astype(np.float32)  # exactly representable in fp16
    w3, b3 = rng.normal(size=(5, 3, 3, 3)).astype(np.float16).astype(np.float32), np.arange(5, dtype=np.float32)
    param, binary = _write_pair(tmp_path, [(4, 3, 3, w1, b1, False), (3, 4, 1, w2, None, True),
                                           (5, 3, 3, w3, b3, True)])
    assert [c["out"] for c in parse_param(param)] == [4, 3, 5]
    (r1, rb1), (r2, rb2), (r3, rb3) = read_bin(param, binary)
    np.testing.assert_array_equal(r1, w1)
    np.testing.assert_array_equal(rb1, b1)
    np.testing.assert_array_equal(r2, w2)  # 3*4 fp16 values = 24 bytes: no padding; w3's 135 need 2 bytes of it
    assert rb2 is None
    np.testing.assert_array_equal(r3, w3)
    np.testing.assert_array_equal(rb3, b3)


def test_the_reader_refuses_files_that_are_not_plain_convolution_graphs(tmp_path):
    w = np.zeros((2, 3, 3, 3), np.float32)
    param, binary = _write_pair(tmp_path, [(2, 3, 3, w, None, False)], extra_bytes=b"\0\0\0\0")
    with pytest.raises(NcnnFormatError, match="4 bytes left"):
        read_bin(param, binary)
    param, binary = _write_pair(tmp_path, [(2, 3, 3, w, None, False)], kinds={0: "ConvolutionDepthWise"})
    with pytest.raises(NcnnFormatError, match="ConvolutionDepthWise"):
        parse_param(param)
    (tmp_path / "bad.param").write_text("not ncnn\n")
    with pytest.raises(NcnnFormatError, match="bad.param"):
        parse_param(tmp_path / "bad.param")
    param, binary = _write_pair(tmp_path, [(2, 3, 3, w, None, False)])
    with pytest.raises(NcnnFormatError, match="convolutions, the network has"):
        rrdbnet_state_dict(param, binary, torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Conv2d(2, 2, 3)))


def test_an_offline_fetch_names_the_missing_files_and_downloads_nothing(tmp_path):
    from dictsr_core.peers.pretrained import PretrainedError, fetch_pretrained

    with pytest.raises(PretrainedError, match=r"\.param: realesrgan-x4plus is not fetched.*dictsr weights --peers"):
        fetch_pretrained("realesrgan-x4plus", tmp_path, log=None, offline=True)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ---------------------------------------------------------------- the real weights

@pytest.fixture(scope="module")
def peers(cached_or_fetched):
    """The converted peers (fetched once: `dictsr weights --peers` in setup already did)."""
    from dictsr_core.peers.pretrained import fetch_pretrained, load_pretrained

    for name in PEERS:
        cached_or_fetched(fetch_pretrained, f"the {name} weights", name)
    return {name: load_pretrained(name, fetch=False) for name in PEERS}


def _reference(name):
    lr = np.asarray(Image.open(REFERENCE / "astronaut_lr24.png").convert("RGB"))
    return lr, np.asarray(Image.open(REFERENCE / f"{name}_sr96.png").convert("RGB"))


@pytest.mark.parametrize("name", PEERS)
def test_the_converted_network_gives_the_stored_ncnn_reference(peers, name):
    """The reference crop was made by ncnn from the published .param/.bin (fp32 arithmetic); the PyTorch network
    converted from the same files must give the same image (to one grey level of rounding)."""
    from dictsr_core.inference.tiled import super_resolve

    lr, expected = _reference(name)
    sr = super_resolve(peers[name], lr, tile=0, device="cpu")
    assert sr.shape == (96, 96, 3)
    assert np.abs(sr.astype(int) - expected).max() <= 1
    other = _reference(PEERS[1 - PEERS.index(name)])[1]
    assert np.abs(sr.astype(int) - other).mean() > 1.0  # the two peers are different networks


@pytest.mark.parametrize("name", PEERS)
def test_ncnn_itself_still_gives_the_stored_reference(name, cached_or_fetched):
    pytest.importorskip("ncnn", reason="the optional ncnn package (extra `peers`) is not installed")
    from dictsr_core.peers.ncnn_runner import ncnn_net, ncnn_super_resolve
    from dictsr_core.peers.pretrained import fetch_pretrained, ncnn_files

    cached_or_fetched(fetch_pretrained, f"the {name} weights", name)
    lr, expected = _reference(name)
    sr = ncnn_super_resolve(ncnn_net(*ncnn_files(name)), lr)
    assert np.abs(sr.astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_tiles_with_the_peer_margin_give_the_whole_image(peers):
    from dictsr_core.inference.tiled import super_resolve

    rng = np.random.default_rng(1)
    lr = np.asarray(Image.open(REFERENCE / "astronaut_lr24.png").convert("RGB").resize((40, 40), Image.BICUBIC))
    lr = np.clip(lr + rng.normal(0, 4, lr.shape), 0, 255).astype(np.uint8)
    model = peers["realesrgan-x4plus"]
    whole = super_resolve(model, lr, tile=0, device="cpu")
    tiled = super_resolve(model, lr, tile=16, device="cpu")
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_a_tampered_converted_file_is_refused_by_name(tmp_path):
    from dictsr_core.peers.pretrained import PRETRAINED, load_state, state_path
    from dictsr_core.perceptual.weights import WeightsVerificationError

    path = state_path("realsr-df2k", tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"model.0.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsVerificationError, match="realsr-df2k.pt"):
        load_state("realsr-df2k", tmp_path)
    assert PRETRAINED["realsr-df2k"].tensors_sha256  # converted tensors are pinned


def test_every_peer_says_what_it_was_trained_on():
    from dictsr_core.peers.pretrained import PRETRAINED, trained_on

    for name in PRETRAINED:
        assert "not our budget" in trained_on(name) and "DF2K" in trained_on(name)


def test_sr_method_runs_a_peer_and_refuses_a_checkpoint(peers, tmp_path):
    from dictsr_core.cli import main

    image = tmp_path / "in" / "face.png"
    image.parent.mkdir()
    Image.open(REFERENCE / "astronaut_lr24.png").save(image)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        code = main(["sr", "--method", "realesrgan-x4plus", str(image), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "face.png"))
    assert np.abs(written.astype(int) - _reference("realesrgan-x4plus")[1]).max() <= 1
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["sr", "--method", "realsr-df2k", "--checkpoint", "x.pt", str(image), "--out", str(tmp_path / "o2")])
    assert code != 0 and "drop --checkpoint x.pt" in err.getvalue() and not (tmp_path / "o2").exists()
