"""Validating readers at the boundaries: damaged prepared files, releases and samples.h5,
and absurd options, each refused in one line naming the file and the problem, with earlier
outputs left byte-identical."""

import json
import re
import shutil

import h5py
import numpy as np

import pytest
import torch

from helpers import synth
from helpers.releases import tiny_release
from radiodiff.cli import main
from radiodiff.data.prepared import read_prepared
from radiodiff.diffusion.sampling import SamplerSpec, check_sample_memory, check_seed_range
from radiodiff.io.integrity import MANIFEST, IntegrityError, sha256_file
from radiodiff.io.release_files import WEIGHTS_FILE, META_FILE, seal_release
from radiodiff.pipeline.release import export_release, load_release
from radiodiff.io.samples import read_samples

pytestmark = pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning")


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _err(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _flip(path, offset, n=4):
    data = bytearray(path.read_bytes())
    for k in range(offset, offset + n):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------- prepared HDF5

@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return synth.write_blob_set(tmp_path_factory.mktemp("blobs") / "set.h5",
                                n_per=(("train", 20), ("valid", 10), ("test", 10)))


@pytest.fixture
def copy(blobs, tmp_path):
    dst = tmp_path / "bad.h5"
    shutil.copy(blobs, dst)
    return dst


def _drop(path, name):
    with h5py.File(path, "r+") as f:
        del f[name]


def _shorten(path, name):
    with h5py.File(path, "r+") as f:
        data = f[name][()]
        del f[name]
        f.create_dataset(name, data=data[:-3])


def _tamper(path, name="images"):
    with h5py.File(path, "r+") as f:
        f[name][0, 0, 5, 5] = 0.123


def _corrupt_chunk(path):
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(0)
    _flip(path, info.byte_offset + info.size // 2, 16)


def _scalar(path, name):
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, data=1.0)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("damage, message", [
    (lambda p: _drop(p, "flags"), "dataset 'flags' is missing"),
    (lambda p: _shorten(p, "ra"), "'ra' has 37 rows, images have 40"),
    (_corrupt_chunk, "dataset 'images' is unreadable, a corrupt chunk"),
    (_tamper, "content does not match its data_sha256"),
    (_truncate, "not a readable HDF5 file"),
    (lambda p: _scalar(p, "ra"), "'ra' is float64"),
])
def test_damaged_prepared_file_is_one_line(copy, tmp_path, capsys, damage, message):
    out = tmp_path / "inspect"
    assert main(["inspect", str(copy), "--out", str(out), "--n-per-class", "2"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    damage(copy)
    with pytest.raises(ValueError, match=message):
        read_prepared(copy, images=False, verify=True)
    assert main(["inspect", str(copy), "--out", str(out), "--n-per-class", "2",
                 "--overwrite"]) == 2  # a rerun that may replace its own earlier output
    line = _err(capsys)
    assert str(copy) in line and message in line and "radiodiff prepare" in line
    assert _snapshot(out) == before  # earlier outputs untouched


def test_tampered_file_reads_without_verify_but_not_with(copy):
    _tamper(copy)
    read_prepared(copy, images=False)  # cheap layout check only
    with pytest.raises(IntegrityError, match="data_sha256"):
        read_prepared(copy, images=False, verify=True)


def test_image_size_must_match_the_config(blobs, tmp_path):
    from radiodiff.config import ConfigError, load_config
    from radiodiff.training.fit import train
    cfg = load_config(["data=tiny", "model=unet_tiny", "logger=csv", f"data.out={blobs}",
                       "data.image_size=32", f"paths.output_dir={tmp_path}/out",
                       f"paths.ckpt_root={tmp_path}/ckpt", "trainer.precision=32"])
    with pytest.raises(ConfigError, match=r"images are 16x16 pixels but data.image_size=32"):
        train(cfg)
    assert not (tmp_path / "ckpt").exists()


# ------------------------------------------------------------------------------ releases

@pytest.fixture
def release_dir(tmp_path):
    return tiny_release(tmp_path / "rel", ["FRI", "FRII"])


def _rewrite_weights(path, change):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(path / WEIGHTS_FILE), "pt") as f:
        metadata = f.metadata()
    state = load_file(path / WEIGHTS_FILE)
    change(state)
    save_file(state, str(path / WEIGHTS_FILE), metadata=metadata)


def _rewrite_meta(path, **values):
    meta = json.loads((path / META_FILE).read_text())
    meta.update(values)
    (path / META_FILE).write_text(json.dumps(meta))


def _nan_weights(path):
    _rewrite_weights(path, lambda s: next(v for v in s.values()
                                          if v.is_floating_point() and v.numel() > 1).fill_(
        float("nan")))
    seal_release(path)  # hashes right: the finite check must catch it


def _flip_weights(path):
    _flip(path / WEIGHTS_FILE, (path / WEIGHTS_FILE).stat().st_size - 100)


@pytest.mark.parametrize("damage, message", [
    (_nan_weights, "tensors hold NaN or inf"),
    (lambda p: (_rewrite_meta(p, sigma_data=float("nan")), seal_release(p)),
     "sigma_data=nan must be a finite number > 0"),
    (lambda p: (_rewrite_meta(p, image_size="16", classes=3), seal_release(p)),
     "meta.json has values of the wrong type"),
    (_flip_weights, "model.safetensors does not match its SHA-256 in SHA256SUMS"),
    (lambda p: (_rewrite_meta(p, seed=1)), "meta.json does not match its SHA-256"),
])
def test_damaged_release_is_refused(release_dir, tmp_path, capsys, damage, message):
    out = tmp_path / "samples"
    args = ["sample", "--model", str(release_dir), "--n", "2", "--steps", "2",
            "--out", str(out)]
    assert main(args) == 0
    before = _snapshot(out)
    capsys.readouterr()
    damage(release_dir)
    with pytest.raises(ValueError, match=message):
        load_release(release_dir)
    assert main(args) == 2
    line = _err(capsys)
    assert str(release_dir) in line and message in line
    assert _snapshot(out) == before


def test_export_refuses_nan_weights_and_keeps_the_old_release(release_dir):
    before = _snapshot(release_dir)
    rel = load_release(release_dir)
    with torch.no_grad():
        next(rel.denoiser.parameters()).fill_(float("nan"))
    with pytest.raises(IntegrityError, match="tensors hold NaN or inf"):
        export_release(release_dir, rel.denoiser, rel.config, rel.meta)
    assert _snapshot(release_dir) == before


def test_release_manifest_is_sha256sum_format(release_dir):
    lines = (release_dir / MANIFEST).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["config.yaml", WEIGHTS_FILE,
                                                        META_FILE]
    assert lines[1].split("  ")[0] == sha256_file(release_dir / WEIGHTS_FILE)


def test_a_manifest_that_leaves_the_weights_out_is_refused(release_dir, tmp_path):
    """Otherwise the weights would go unchecked: a manifest is all or nothing."""
    copy = tmp_path / "partly-listed"
    shutil.copytree(release_dir, copy)
    lines = (copy / MANIFEST).read_text().splitlines()
    (copy / MANIFEST).write_text("".join(f"{line}\n" for line in lines
                                         if not line.endswith(WEIGHTS_FILE)))
    with open(copy / WEIGHTS_FILE, "r+b") as f:  # changed: unnoticed without its entry
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(IntegrityError, match=rf"{WEIGHTS_FILE} not listed in {MANIFEST}"):
        load_release(copy)


def test_shipped_model_is_sealed_and_loads():
    from radiodiff.io.release_files import resolve_model
    path = resolve_model("first")
    rel = load_release(path)  # checks SHA256SUMS
    assert (path / MANIFEST).is_file()
    assert rel.weights_sha256 == sha256_file(path / WEIGHTS_FILE)


# ---------------------------------------------------------------------------- samples.h5

def test_truncated_samples_h5(release_dir, tmp_path, capsys, blobs):
    out = tmp_path / "samples"
    assert main(["sample", "--model", str(release_dir), "--n", "3", "--steps", "2",
                 "--out", str(out)]) == 0
    assert read_samples(out)["images"].shape == (3, 1, 16, 16)
    _truncate(out / "samples.h5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_samples(out)
    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["evaluate", "--reference", str(blobs), "--samples", str(out),
                 "--out", str(report), "--no-sourcefinder"]) == 2
    line = _err(capsys)
    assert str(out / "samples.h5") in line and "truncated or corrupt" in line
    assert not report.exists()


def _samples_file(path, version=1, images="dataset", label=np.arange(2)):
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = version
        if images == "dataset":
            f.create_dataset("images", data=np.zeros((2, 1, 8, 8), np.float32))
        else:
            f.create_group("images")
        f.create_dataset("label", data=label)
    return path


@pytest.mark.parametrize("kw, message", [
    ({"version": "one"}, "not a radiodiff samples file (format_version='one'"),
    ({"version": 1.5}, "not a radiodiff samples file"),
    ({"images": "group"}, "not a radiodiff samples file"),
    ({"label": np.array([b"FRI", b"FRII"])}, "expected float (N, 1, H, W) and integer (N,)"),
])
def test_malformed_samples_h5_is_one_line(tmp_path, kw, message):
    path = _samples_file(tmp_path / "samples.h5", **kw)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        read_samples(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert read_samples(_samples_file(tmp_path / "ok.h5"))["label"].tolist() == [0, 1]


# ------------------------------------------------------------------------ absurd options

@pytest.mark.parametrize("option, message", [
    (["--n", str(10**12)], "GiB|not enough free space"),  # memory or disk: both refuse
    (["--seed", str(2**64)], "out of range"),
    (["--seed", str(2**63 - 1), "--n", "2"], "out of range"),
    (["--sigma-min", "0"], "need 0 < sigma_min"),
    (["--sigma-max", "1e30"], "sigma_max <= 100000"),
    (["--sigma-min", "1", "--sigma-max", "1"], "need sigma_min < sigma_max"),
    (["--steps", str(10**9)], "past the limit"),
])
def test_absurd_sample_options_are_refused_up_front(release_dir, tmp_path, capsys, option,
                                                    message):
    out = tmp_path / "samples"
    assert main(["sample", "--model", str(release_dir), "--out", str(out), *option]) == 2
    line = _err(capsys)
    assert re.search(message, line)
    assert not out.exists()


def test_limit_functions():
    check_seed_range(2**63 - 2, 2)
    with pytest.raises(ValueError, match="out of range"):
        check_seed_range(-1, 1)
    assert check_sample_memory(10, 16) == 10 * 16 * 16 * 4 * 4
    with pytest.raises(ValueError, match="rho"):
        SamplerSpec(rho=1e9)  # past the limit


def test_giant_model_channels_is_refused_before_allocating(tmp_path, blobs):
    from radiodiff.config import load_config
    from radiodiff.diffusion.factory import build_denoiser, network_args
    from radiodiff.training.fit import train
    cfg = load_config(["model=unet_tiny"])
    args = network_args(cfg.model, 16, 2)
    args["model_channels"] = 10**6
    with pytest.raises(ValueError, match=r"parameters .* GiB .*lower model.model_channels"):
        build_denoiser(args, 0.5)
    cfg = load_config(["data=tiny", "model=unet_tiny", "logger=csv", f"data.out={blobs}",
                       "model.model_channels=1000000", f"paths.output_dir={tmp_path}/out",
                       f"paths.ckpt_root={tmp_path}/ckpt", "trainer.precision=32"])
    with pytest.raises(ValueError, match="parameters"):
        train(cfg)


def test_non_finite_samples_are_refused_before_writing(release_dir):
    from radiodiff.pipeline.generate import generate
    rel = load_release(release_dir)
    with torch.no_grad():  # a release that went bad in memory (or a sampler blowing up)
        rel.denoiser.net.conv_out.bias.fill_(float("inf"))
    with pytest.raises(IntegrityError, match=r"rel: 2 of 2 sampled images hold NaN or inf"):
        generate(rel, 2, steps=2)
