"""Release folders (export -> load) and sampling from them, on a tiny 16x16 U-Net."""

import dataclasses
import json
import pickle
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from helpers.releases import CLASSES, SCALARS, SIZE
from radiodiff.cli import main
from radiodiff.diffusion.conditions import ConditionTransform
from radiodiff.diffusion.edm import EDMDenoiser
from radiodiff.pipeline.generate import generate
from radiodiff.io.fits import read_fits_image, write_fits_image
from radiodiff.pipeline.release import export_release, load_release
from radiodiff.io.integrity import read_manifest
from radiodiff.io.release_files import FORMAT_VERSION
from radiodiff.io.samples import save_samples

# Batched network calls (batch_invariant=False) round differently with the batch size
# (GEMM vs GEMV), by ~1e-7 per layer; the default per-image evaluation is bit-identical.
BATCH_ATOL = 1e-4
FAST = dict(steps=3, batch_size=4)  # 3 Heun steps: 5 network evaluations


def _inputs(n=3):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 1, SIZE, SIZE, generator=g)
    sigma = torch.tensor([0.05, 1.0, 20.0])[:n]
    cond = {"label": torch.tensor([0, 1, -1])[:n],
            "peak_flux": torch.tensor([0.3, float("nan"), -1.0])[:n],
            "las_arcsec": torch.tensor([0.0, 1.2, float("nan")])[:n]}
    return x, sigma, cond


# --------------------------------------------------------------------------- export / load

def test_release_folder_layout(release_dir, meta):
    assert sorted(p.name for p in release_dir.iterdir()) == [
        "SHA256SUMS", "config.yaml", "meta.json", "model.safetensors"]
    assert not [p for p in release_dir.parent.iterdir() if p.name.startswith(".rd")]
    m = json.loads((release_dir / "meta.json").read_text())
    for key in ("classes", "scalar_conditions", "condition_transform", "sigma_data",
                "image_size", "image_unit", "pixel_scale_arcsec", "beam_arcsec", "scaling",
                "data_sha256", "inputs_sha256", "git_commit", "package_version", "seed",
                "images_seen", "step"):
        assert m[key] == meta[key], key
    assert m["format_version"] == FORMAT_VERSION and m["created_utc"]
    assert m["model_name"] == "unet_tiny"
    from safetensors import safe_open
    with safe_open(str(release_dir / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["radiodiff_format_version"] == str(FORMAT_VERSION)
        assert f.metadata()["model_name"] == "unet_tiny"
        assert "sigma_data" in f.keys() and "net.conv_out.weight" in f.keys()


def test_load_gives_identical_outputs_without_pickle(release_dir, denoiser, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("release loading must not unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    assert not [p for p in release_dir.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".ckpt")]
    state = torch.get_rng_state()
    rel = load_release(release_dir)
    assert torch.equal(torch.get_rng_state(), state)  # loading leaves the global RNG alone
    assert isinstance(rel.denoiser, EDMDenoiser) and not rel.denoiser.training
    assert rel.classes == CLASSES and rel.scalar_conditions == SCALARS
    assert rel.transform.to_dict() == ConditionTransform.from_dict(
        rel.meta["condition_transform"]).to_dict()
    assert rel.config.model.name == "unet_tiny" and len(rel.weights_sha256) == 64
    x, sigma, cond = _inputs()
    with torch.no_grad():
        ref = denoiser(x, sigma, cond)
        out = rel.denoiser(x, sigma, cond)
    assert torch.equal(ref, out)
    with torch.no_grad():
        assert not torch.allclose(ref, denoiser(x, sigma, None))  # conditions matter


def test_export_replaces_existing_release(tmp_path, denoiser, config, meta):
    dest = tmp_path / "rel"
    export_release(dest, denoiser, config, meta)
    export_release(dest, denoiser, config, dict(meta, step=20), overwrite=True)
    assert json.loads((dest / "meta.json").read_text())["step"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel"]
    # the recommended sampler (which the model card quotes) stays, unless --fresh
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.pipeline.release import recommend_sampler
    recommend_sampler(dest, SamplerSpec(name="dpmpp_2m", steps=7, guidance=1.5))
    export_release(dest, denoiser, config, dict(meta, step=30), overwrite=True)
    again = json.loads((dest / "meta.json").read_text())
    assert again["step"] == 30 and again["sampler"]["steps"] == 7
    assert load_release(dest).sampler.guidance == 1.5
    export_release(dest, denoiser, config, meta, overwrite=True, fresh=True)
    assert "sampler" not in json.loads((dest / "meta.json").read_text())


def test_export_validates_meta(tmp_path, denoiser, config, meta):
    with pytest.raises(ValueError, match="missing.*classes"):
        export_release(tmp_path / "a", denoiser, config,
                       {k: v for k, v in meta.items() if k != "classes"})
    with pytest.raises(ValueError, match="sigma_data"):
        export_release(tmp_path / "b", denoiser, config, dict(meta, sigma_data=0.5))
    with pytest.raises(ValueError, match="image_unit"):
        export_release(tmp_path / "c", denoiser, config, dict(meta, image_unit="mJy"))
    assert not list(tmp_path.iterdir())


@pytest.fixture
def broken(tmp_path, release_dir):
    """An unsealed copy (no SHA256SUMS, as releases before it): the content checks speak;
    the hash check is tested in tests/faults/test_readers.py."""
    dest = tmp_path / "broken"
    shutil.copytree(release_dir, dest)
    (dest / "SHA256SUMS").unlink()
    return dest


def test_load_errors(tmp_path, broken):
    with pytest.raises(FileNotFoundError, match="release folder not found"):
        load_release(tmp_path / "nowhere")
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="broken.*model.safetensors is corrupt"):
        load_release(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_release(broken)


def test_load_rejects_other_format_and_mismatched_weights(broken):
    m = json.loads((broken / "meta.json").read_text())
    (broken / "meta.json").write_text(json.dumps(dict(m, format_version=99)))
    with pytest.raises(ValueError, match="unsupported release format_version 99"):
        load_release(broken)
    (broken / "meta.json").write_text(json.dumps(dict(m, classes=["A", "B", "C"])))
    with pytest.raises(ValueError, match="does not match the network"):
        load_release(broken)


# --------------------------------------------------------------------------- generate

def test_generate_matches_original_and_is_batch_size_invariant(release, denoiser):
    original = dataclasses.replace(release, denoiser=denoiser)
    kw = dict(n=5, label="FRII", peak_flux=0.02, las_arcsec=40.0, steps=3, seed=7)
    a = generate(release, batch_size=4, **kw)
    b = generate(original, batch_size=4, **kw)
    c = generate(release, batch_size=1, **kw)
    assert a.images.shape == (5, 1, SIZE, SIZE) and a.images.dtype == np.float32
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.images, c.images)  # bit-identical across batch sizes
    e = generate(release, batch_size=1, batch_invariant=False, **kw)
    f = generate(release, batch_size=5, batch_invariant=False, **kw)
    np.testing.assert_allclose(e.images, f.images, rtol=0, atol=BATCH_ATOL)
    assert a.images.min() >= 0 and a.images.max() <= 1 and a.images.std() > 0
    assert a.seeds.tolist() == [7, 8, 9, 10, 11]
    # Image k depends only on seed + k: a run starting at seed 9 reproduces images 2..4.
    d = generate(release, n=3, label="FRII", peak_flux=0.02, las_arcsec=40.0, steps=3,
                 seed=9, batch_size=2)
    assert np.array_equal(d.images, a.images[2:])
    assert a.conditions["class"].tolist() == ["FRII"] * 5
    assert a.conditions["label"].tolist() == [1] * 5
    assert a.conditions["peak_flux"].tolist() == [0.02] * 5


@pytest.mark.parametrize("sampler, nfe", [("heun", 5), ("euler", 3), ("dpmpp_2m", 3),
                                          ("stochastic", 5)])
def test_nfe_per_sampler(release, sampler, nfe):
    r = generate(release, n=2, sampler=sampler, **FAST)
    assert r.nfe.tolist() == [nfe, nfe]
    assert r.settings["sampler"] == sampler and np.isfinite(r.images).all()


def test_stochastic_churn_is_batch_size_invariant(release):
    kw = dict(n=3, sampler="stochastic", S_churn=2.0, steps=3, label="FRI")
    a, b = generate(release, batch_size=3, **kw), generate(release, batch_size=1, **kw)
    assert np.array_equal(a.images, b.images)  # churn runs one image per solver call
    assert not np.array_equal(a.images, generate(release, n=3, label="FRI", steps=3).images)


def test_guidance_and_unconditional(release):
    uncond = generate(release, n=2, **FAST)
    assert uncond.conditions["label"].tolist() == [-1, -1]
    assert np.isnan(uncond.conditions["peak_flux"]).all()
    cond1 = generate(release, n=2, label="FRI", **FAST)
    w0 = generate(release, n=2, label="FRI", guidance=0.0, **FAST)
    w2 = generate(release, n=2, label="FRI", guidance=2.0, **FAST)
    assert np.array_equal(w0.images, uncond.images)      # w = 0 is the unconditional model
    assert not np.array_equal(cond1.images, uncond.images)
    assert not np.array_equal(w2.images, cond1.images)
    assert w2.nfe.tolist() == [10, 10]  # conditional + unconditional per solver call
    assert generate(release, n=1, guidance=3.0, **FAST).nfe.tolist() == [5]  # nothing to guide


def test_flux_restoration(release):
    r = generate(release, n=2, peak_flux=0.02, **FAST)
    assert r.unit == "Jy/beam"
    np.testing.assert_allclose(r.physical, r.images * np.float32(0.02), rtol=1e-6)
    plain = generate(release, n=2, las_arcsec=30.0, **FAST)
    assert plain.unit == "normalised" and plain.physical is None
    arbitrary = dataclasses.replace(release, meta=dict(release.meta, image_unit="arbitrary"))
    assert generate(arbitrary, n=1, peak_flux=0.02, **FAST).physical is None
    dataset = dataclasses.replace(release, meta=dict(release.meta, scaling="dataset"))
    assert generate(dataset, n=1, peak_flux=0.02, **FAST).unit == "normalised"


@pytest.mark.parametrize("kwargs, match", [
    (dict(label="FRIII"), r"unknown class 'FRIII'; valid classes: FRI, FRII"),
    (dict(peak_flux=-0.1), r"peak_flux must be a positive number \(Jy/beam\)"),
    (dict(las_arcsec=0.0), r"las_arcsec must be a positive number \(arcsec\)"),
    (dict(steps=0), r"steps must be an integer >= 1"),
    (dict(n=0), r"n must be an integer >= 1"),
    (dict(batch_size=0), r"batch_size must be an integer >= 1"),
    (dict(guidance=-1.0), r"guidance must be a finite number >= 0"),
    (dict(sampler="ddim"), r"unknown sampler 'ddim'; valid samplers: euler, heun"),
])
def test_generate_validation(release, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(release, **{"n": 1, **kwargs})


def test_condition_needs_a_trained_model(release):
    plain = dataclasses.replace(release, meta=dict(release.meta, classes=[],
                                                   scalar_conditions=["las_arcsec"]))
    with pytest.raises(ValueError, match="not trained with the peak_flux condition"):
        generate(plain, n=1, peak_flux=0.02)
    with pytest.raises(ValueError, match="trained without class labels"):
        generate(plain, n=1, label="FRI")


# --------------------------------------------------------------------------- FITS / outputs

def test_write_fits_image_wcs_and_cards(tmp_path):
    img = np.arange(12 * 10, dtype=np.float64).reshape(12, 10)
    path = write_fits_image(tmp_path / "x.fits", img, 2.5, beam_arcsec=(6.0, 5.0),
                            bunit="JY/BEAM", ra=150.0, dec=2.0,
                            cards={"SEED": 3, "NOTE": ("hi", "a comment"), "SKIP": None,
                                   "LONGVAL": "x" * 100})
    with fits.open(path) as hdul:
        h, data = hdul[0].header, hdul[0].data
        assert data.dtype == np.dtype(">f4") and np.array_equal(data, img.astype(np.float32))
    w = WCS(h)
    np.testing.assert_allclose(proj_plane_pixel_scales(w) * 3600, [2.5, 2.5])
    assert h["CDELT1"] < 0 < h["CDELT2"] and h["CTYPE1"] == "RA---SIN"
    centre = w.pixel_to_world((10 - 1) / 2, (12 - 1) / 2)
    assert centre.ra.deg == pytest.approx(150.0) and centre.dec.deg == pytest.approx(2.0)
    assert h["BUNIT"] == "JY/BEAM" and h["BMAJ"] * 3600 == pytest.approx(6.0)
    assert h["BMIN"] * 3600 == pytest.approx(5.0) and h["BPA"] == 0.0
    assert h["SEED"] == 3 and h["NOTE"] == "hi" and "SKIP" not in h
    assert "LONGVAL" not in h and "".join(h["HISTORY"]).replace(" ", "") == "LONGVAL=" + "x" * 100
    assert read_fits_image(path).wcs.has_celestial  # our own reader accepts it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.fits"]


@pytest.mark.parametrize("cards, match", [({"TOOLONGKEY": 1}, "keyword"),
                                          ({"lower": 1}, "keyword"), ({"CDELT1": 1}, "reserved"),
                                          ({"OBJ": [1]}, "string or a number")])
def test_write_fits_image_rejects_bad_cards(tmp_path, cards, match):
    with pytest.raises(ValueError, match=match):
        write_fits_image(tmp_path / "x.fits", np.zeros((4, 4)), 1.0, cards=cards)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- CLI

def test_cli_sample(tmp_path, release_dir, capsys):
    out = tmp_path / "s"
    rc = main(["sample", "--model", str(release_dir), "--n", "2", "--class", "FRI",
               "--peak-flux", "0.02", "--las", "40", "--steps", "2", "--seed", "3",
               "--batch-size", "2", "--out", str(out)])
    assert rc == 0
    assert "2 samples (Jy/beam, 3 network evaluations each)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS", "preview.png", "sample_00000.fits", "sample_00001.fits", "samples.h5"]
    h = fits.getheader(out / "sample_00001.fits")
    assert h["SEED"] == 4 and h["STEPS"] == 2 and h["CLASS"] == "FRI"


def test_cli_sample_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 100)", "(default: 32)"):
        assert default in text
    # solver, steps and guidance: what the release recommends, not a package constant
    assert text.count("(default: the model's recommended setting, its meta.json `sampler`)") \
        == 7


@pytest.mark.parametrize("args, match", [
    (["--class", "FRIII"], "unknown class 'FRIII'; valid classes: FRI, FRII"),
    (["--peak-flux", "-0.02"], r"peak_flux must be a positive number \(Jy/beam\), got -0.02"),
    (["--steps", "0"], "steps must be an integer >= 1, got 0"),
])
def test_cli_sample_bad_options(tmp_path, release_dir, capsys, args, match):
    rc = main(["sample", "--model", str(release_dir), "--n", "1", "--out", str(tmp_path / "o"),
               *args])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("radiodiff sample: error: ")
    assert re.search(match, err)
    assert not (tmp_path / "o").exists()


def test_cli_sample_bad_model(tmp_path, broken, capsys):
    rc = main(["sample", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing: no such release folder, checkpoint or shipped model" in err
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    rc = main(["sample", "--model", str(broken), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "model.safetensors is corrupt" in err and str(broken) in err
    assert len(err.strip().splitlines()) == 1


def test_stretched_release_decodes_and_projects_its_output(tmp_path, denoiser, config, meta):
    """A power-stretch release: decoded to data space, projected like the data (peak at
    exactly 1, far sub-quantum specks zeroed); the raw images are kept beside them."""
    m = dict(meta, intensity={"stretch": "power", "param": 0.25, "lo": 0.0, "hi": 1.0},
             projection={"floor": 1 / 255, "halo_px": 1, "peak_one": True})
    rel = load_release(export_release(tmp_path / "stretch", denoiser, config, m))
    assert rel.intensity.stretch == "power" and rel.projection["halo_px"] == 1
    res = generate(rel, 3, label="FRI", peak_flux=0.05, **FAST)
    assert res.settings["projected"] and res.raw is not None
    np.testing.assert_array_equal(res.images.reshape(3, -1).max(1), 1.0)
    assert (res.raw >= 0).all() and (res.raw <= 1).all()
    # the restored peak equals the requested peak flux to float precision
    np.testing.assert_allclose(res.physical.reshape(3, -1).max(1), 0.05, rtol=1e-6)
    plain = generate(rel, 3, label="FRI", peak_flux=0.05, project=False, **FAST)
    np.testing.assert_array_equal(plain.images, res.raw)
    assert plain.raw is None and not plain.settings["projected"]
    assert plain.physical is None and plain.unit != "Jy/beam"  # peak 1 only when projected
    save_samples(tmp_path / "out", rel, res)
    with h5py.File(tmp_path / "out" / "samples.h5") as f:
        np.testing.assert_array_equal(f["images_raw"][()], res.raw)


@pytest.mark.parametrize("bad", [{"floor": 2.0, "halo_px": 2, "peak_one": True},
                                 {"floor": 0.01, "halo_px": -1, "peak_one": True},
                                 {"floor": 0.01}])
def test_bad_projection_in_meta_is_refused_on_load(tmp_path, release_dir, bad):
    broken = tmp_path / "broken"
    shutil.copytree(release_dir, broken)
    (broken / "SHA256SUMS").unlink()  # unsealed: the content check speaks (hashes: tests/faults)
    meta_file = broken / "meta.json"
    m = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(dict(m, projection=bad)))
    with pytest.raises(ValueError, match=r"broken.*meta\.json.*projection"):
        load_release(broken)


# --------------------------------------------------------------------------- science-product cards

def _header_text(h: fits.Header) -> str:
    """Every keyword, value and comment of a header, HISTORY and COMMENT cards included."""
    return "\n".join(f"{c.keyword} {c.value} {c.comment}" for c in h.cards)


def test_cli_sample_places_the_images_on_the_sky(tmp_path, release_dir, capsys):
    out = tmp_path / "s"
    rc = main(["sample", "--model", str(release_dir), "--n", "1", "--steps", "1",
               "--ra", "-209.5", "--dec", "-30.25", "--out", str(out)])
    assert rc == 0
    h = fits.getheader(out / "sample_00000.fits")
    assert (h["CRVAL1"], h["CRVAL2"]) == (150.5, -30.25)  # the angle wrapped into [0, 360)
    assert "placeholder" not in _header_text(h)
    rc = main(["sample", "--model", str(release_dir), "--n", "1", "--ra", "150",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "give both --ra and --dec" in err and not (tmp_path / "o").exists()


def test_cli_sample_help_shows_each_default_once(capsys):
    """ArgumentDefaultsHelpFormatter must not add "(default: None)" nor repeat a
    hand-written default; --ra/--dec document the (0, 0) placeholder."""
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "(default: None)" not in " ".join(out.split())
    entries, entry = [], ""
    for line in out.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            entries.append(entry)
            entry = ""
        entry += " " + line.strip()
    entries = [e.strip() for e in entries + [entry] if e.strip()]
    assert len(entries) >= 18
    twice = [e for e in entries if e.count("(default:") > 1]
    assert not twice
    for line in out.splitlines():
        assert line.count("(default:") <= 1, line
    ra = next(e for e in entries if e.startswith("--ra"))
    dec = next(e for e in entries if e.startswith("--dec"))
    assert "placeholder" in ra and "(default: 0" in ra and "placeholder" in dec
    text = " ".join(entries)
    assert "(default: the built-in model, models/first)" in text
    assert "(default: not fixed, see --conditions)" in text
    conditions = next(e for e in entries if e.startswith("--conditions"))
    assert "(default: draw when the release has train_conditions.csv, else null)" in conditions


@pytest.mark.parametrize("scalars, conditions", [
    ([], r"class \(FRI, FRII\)"),
    (["las_arcsec"], r"class \(FRI, FRII\), las_arcsec"),
])
def test_condition_error_lists_the_class_condition(release, scalars, conditions):
    """A class-conditional model asked for a peak flux names its class condition too."""
    model = dataclasses.replace(release, meta=dict(release.meta, scalar_conditions=scalars))
    with pytest.raises(ValueError, match=r"not trained with the peak_flux condition "
                       rf"\(its conditions: {conditions}\)$"):
        generate(model, n=1, peak_flux=0.05)
    nothing = dataclasses.replace(release, meta=dict(release.meta, classes=[],
                                                     scalar_conditions=[]))
    with pytest.raises(ValueError, match=r"\(its conditions: none\)"):
        generate(nothing, n=1, peak_flux=0.05)


def test_generate_takes_a_spec_or_its_keywords(release):
    from radiodiff.diffusion.sampling import SamplerSpec
    spec = SamplerSpec(name="stochastic", steps=3, S_churn=0.5, sigma_max=5.0)
    a = generate(release, n=2, label="FRI", spec=spec, batch_size=2)
    b = generate(release, n=2, label="FRI", sampler="stochastic", steps=3, S_churn=0.5,
                 sigma_max=5.0, batch_size=2)
    c = generate(release, n=2, label="FRI", spec=dataclasses.replace(spec, steps=9), steps=3,
                 batch_size=2)  # a keyword replaces the spec's value
    assert np.array_equal(a.images, b.images) and np.array_equal(a.images, c.images)
    assert a.settings == b.settings and a.settings["sampler"] == "stochastic"
    with pytest.raises(TypeError, match="unknown sampler option"):
        generate(release, n=1, sigma=2.0)


def test_recording_a_sampler_rewrites_the_release_whole(tmp_path, release_dir, monkeypatch):
    """meta.json and SHA256SUMS change together or not at all; the files beside them (a
    model card) stay."""
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.pipeline import release as release_mod
    rel = tmp_path / "rel"
    shutil.copytree(release_dir, rel)
    (rel / "README.md").write_text("model card\n")
    before = {p.name: p.read_bytes() for p in rel.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("power cut")
    monkeypatch.setattr(release_mod, "write_manifest", crash)
    with pytest.raises(OSError, match="power cut"):
        release_mod.recommend_sampler(rel, SamplerSpec(name="dpmpp_2m", steps=3))
    assert {p.name: p.read_bytes() for p in rel.iterdir()} == before
    assert load_release(rel).sampler == SamplerSpec()
    monkeypatch.undo()
    release_mod.recommend_sampler(rel, SamplerSpec(name="dpmpp_2m", steps=3))
    assert load_release(rel).sampler == SamplerSpec(name="dpmpp_2m", steps=3)
    assert (rel / "README.md").read_text() == "model card\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_a_release_recommends_its_sampler_and_every_entry_point_uses_it(tmp_path, release_dir,
                                                                        capsys):
    """Issue #26: the numbers a release quotes are for its recorded sampler, and
    generate(), sample, demo and evaluate use it unless told otherwise."""
    from radiodiff.diffusion.sampling import SamplerSpec
    from radiodiff.pipeline.release import recommend_sampler
    rel = tmp_path / "rel"
    shutil.copytree(release_dir, rel)
    assert load_release(rel).sampler == SamplerSpec()  # none recorded: package default
    recommend_sampler(rel, SamplerSpec(name="dpmpp_2m", steps=3, guidance=1.5))
    meta = json.loads((rel / "meta.json").read_text())
    # every field: the release does not depend on the package's defaults
    assert meta["sampler"] == dataclasses.asdict(SamplerSpec(name="dpmpp_2m", steps=3,
                                                             guidance=1.5))
    release = load_release(rel)  # the manifest was rewritten with it
    assert release.sampler == SamplerSpec(name="dpmpp_2m", steps=3, guidance=1.5)
    res = generate(release, n=1, label="FRI", peak_flux=0.02, las_arcsec=40)
    assert (res.settings["sampler"], res.settings["steps"]) == ("dpmpp_2m", 3)
    assert generate(release, n=1, label="FRI", steps=2).settings["steps"] == 2
    rc = main(["sample", "--model", str(rel), "--n", "1", "--out", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert rc == 0 and "sampler: dpmpp_2m, 3 steps, guidance 1.5 (the model's " \
        "recommended setting)" in out
    rc = main(["sample", "--model", str(rel), "--n", "1", "--guidance", "1",
               "--out", str(tmp_path / "t")])
    assert rc == 0 and "sampler: dpmpp_2m, 3 steps, guidance 1 (guidance given; the rest " \
        "the model's recommended setting)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [{"name": "nope"}, {"steps": 0}, {"temperature": 2}, [1]])
def test_a_bad_recommended_sampler_is_refused_on_load(tmp_path, release_dir, bad):
    from radiodiff.io.artifacts import write_manifest
    rel = tmp_path / "rel"
    shutil.copytree(release_dir, rel)
    meta = json.loads((rel / "meta.json").read_text())
    (rel / "meta.json").write_text(json.dumps(dict(meta, sampler=bad)))
    sums = {k: v for k, v in read_manifest(rel).items() if k != "meta.json"}
    write_manifest(rel, ["meta.json"], sums)
    with pytest.raises(ValueError, match="sampler"):
        load_release(rel)


def test_the_shipped_models_recommend_the_sampler_their_numbers_are_for():
    from radiodiff.io.release_files import resolve_model
    first = json.loads((resolve_model("first") / "meta.json").read_text())["sampler"]
    mirabest = json.loads((resolve_model("mirabest") / "meta.json").read_text())["sampler"]
    assert (first["name"], first["steps"], first["guidance"]) == ("dpmpp_2m", 7, 1.0)
    assert (mirabest["name"], mirabest["steps"], mirabest["guidance"]) == ("dpmpp_2m", 10, 1.0)


# --------------------------------------------------------------------------- training conditions

@pytest.fixture
def table_release(tmp_path, denoiser, config, meta):
    from helpers.releases import train_table
    table = train_table(12)
    return export_release(tmp_path / "tab", denoiser, config, meta,
                          train_conditions=table), table


def test_export_writes_and_load_reads_the_training_conditions(table_release):
    path, table = table_release
    assert (path / "train_conditions.csv").read_text() == table.to_csv()
    assert (path / "train_conditions.csv").read_text().startswith(
        "label,peak_flux,las_arcsec\n")
    listed = [line.split("  ")[1] for line in (path / "SHA256SUMS").read_text().splitlines()]
    assert "train_conditions.csv" in listed
    m = json.loads((path / "meta.json").read_text())
    assert m["train_conditions"] == {"file": "train_conditions.csv", "rows": 12,
                                     "columns": ["label", "peak_flux", "las_arcsec"]}
    rel = load_release(path)
    for name in table.names:
        assert rel.train_conditions.columns[name].tolist() == table.columns[name].tolist()
    assert generate(rel, 1, **FAST).settings["conditions"] == "draw"


def test_a_changed_training_conditions_file_is_refused(table_release, capsys):
    from radiodiff.io.integrity import IntegrityError
    path, table = table_release
    file = path / "train_conditions.csv"
    file.write_text(file.read_text().replace("\n1,", "\n0,", 1))  # relabel one row
    with pytest.raises(IntegrityError, match=r"train_conditions\.csv: release file "
                       r"train_conditions\.csv does not match its SHA-256 in SHA256SUMS"):
        load_release(path)
    assert main(["sample", "--model", str(path), "--n", "1", "--out",
                 str(path.parent / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    file.unlink()
    with pytest.raises(FileNotFoundError, match="meta.json records train_conditions.csv "
                       "but it is missing"):
        load_release(path)


def test_an_unlisted_training_conditions_file_is_refused(table_release):
    from radiodiff.io.integrity import IntegrityError
    path, _ = table_release
    manifest = path / "SHA256SUMS"
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines()
                                if "train_conditions" not in line))
    with pytest.raises(IntegrityError, match="not listed in SHA256SUMS"):
        load_release(path)


def test_export_refuses_a_table_of_other_conditions(tmp_path, denoiser, config, meta):
    from helpers.releases import train_table
    from radiodiff.diffusion.condition_table import ConditionTable
    from radiodiff.io.integrity import IntegrityError
    t = train_table(4)
    no_las = ConditionTable({k: t.columns[k] for k in ("label", "peak_flux")})
    with pytest.raises(IntegrityError, match=r"table has columns \['label', 'peak_flux'\], "
                       r"the model takes \['label', 'peak_flux', 'las_arcsec'\]"):
        export_release(tmp_path / "a", denoiser, config, meta, train_conditions=no_las)
    bad = ConditionTable(dict(t.columns, label=np.array([0, 1, 2, 0])))
    with pytest.raises(IntegrityError, match=r"holds label 2, beyond the 2 classes"):
        export_release(tmp_path / "b", denoiser, config, meta, train_conditions=bad)
    assert not list(tmp_path.iterdir())


def test_cli_sample_draws_or_leaves_conditions_null(table_release, tmp_path, capsys):
    path, table = table_release
    assert main(["sample", "--model", str(path), "--n", "2", "--steps", "1",
                 "--out", str(tmp_path / "d")]) == 0
    assert "drawn from the model's training rows" in capsys.readouterr().out
    h = fits.getheader(tmp_path / "d" / "sample_00001.fits")
    assert h["CONDS"] == "draw" and h["PEAKFLUX"] in table.columns["peak_flux"].tolist()
    assert h["BUNIT"] == "Jy/beam"
    assert main(["sample", "--model", str(path), "--n", "1", "--steps", "1", "--conditions",
                 "null", "--out", str(tmp_path / "n")]) == 0
    assert "drawn" not in capsys.readouterr().out
    h = fits.getheader(tmp_path / "n" / "sample_00000.fits")
    assert h["CONDS"] == "null" and "PEAKFLUX" not in h and h["CLASS"] == "none"
    # every condition given: nothing drawn, said nowhere
    assert main(["sample", "--model", str(path), "--n", "1", "--steps", "1", "--class", "FRI",
                 "--peak-flux", "0.02", "--las", "30", "--out", str(tmp_path / "g")]) == 0
    assert "drawn" not in capsys.readouterr().out
    h = fits.getheader(tmp_path / "g" / "sample_00000.fits")
    assert "CONDS" not in h and h["PEAKFLUX"] == 0.02 and h["LAS"] == 30.0


def test_releases_without_a_table_generate_with_null_conditions(release):
    from radiodiff.io.release_files import resolve_model
    assert release.train_conditions is None and release.meta["train_conditions"] is None
    first = load_release(resolve_model("first"))  # class-only, exported before tables
    assert first.train_conditions is None and "train_conditions" not in first.meta
    r = generate(first, 1, steps=1)
    assert r.settings["conditions"] == "null" and r.conditions["label"].tolist() == [-1]


def test_a_release_names_no_local_folder(tmp_path):
    import torch as _torch
    from radiodiff.config import load_config
    from radiodiff.diffusion.edm import EDMDenoiser
    from radiodiff.diffusion.unet import build_unet
    from radiodiff.pipeline.release import export_release
    from helpers.releases import tiny_release
    ref = load_release(tiny_release(tmp_path / "ref", ["A"]))
    cfg = load_config(["model=unet_tiny", f"paths.output_dir={tmp_path}/runs",
                       f"paths.ckpt_root={tmp_path}/ckpt"])
    _torch.manual_seed(0)
    net = build_unet(cfg.model, 16, 1, 1, ())
    out = export_release(tmp_path / "rel", EDMDenoiser(net, 0.1).eval(), cfg, dict(ref.meta))
    text = (out / "config.yaml").read_text()
    assert str(tmp_path) not in text and "<local path>" in text
    assert load_release(out).config.model.model_channels == cfg.model.model_channels


def test_release_files_are_readable_by_others(tmp_path, denoiser, config, meta):
    """Issue #26: safetensors writes 0600; a release is shared, so it is 0644 (umask 022)."""
    import os
    import stat
    old = os.umask(0o022)
    try:
        rel = export_release(tmp_path / "r", denoiser, config, meta)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "meta.json", "config.yaml", "SHA256SUMS"):
        assert stat.S_IMODE(os.stat(rel / name).st_mode) == 0o644, name


@pytest.mark.parametrize("value, local", [("/home/u/ckpt", True), ("~/data.h5", True),
                                          ("C:\\runs", True), ("D:/x", True),
                                          ("outputs/eval_cache", False), ("data/first.h5", False),
                                          ("", False), (3, False), (None, False)])
def test_what_counts_as_a_local_path(value, local):
    from radiodiff.io.release_files import is_local_path
    assert is_local_path(value) is local


def test_weights_changed_between_the_hash_check_and_the_read_are_refused(release_dir,
                                                                          monkeypatch):
    from radiodiff.io.integrity import IntegrityError
    from radiodiff.pipeline import release as release_mod
    read = release_mod.read_weights

    def swapped(path):  # another process replaces the file after verify_file
        state, _ = read(path)
        return state, "0" * 64
    monkeypatch.setattr(release_mod, "read_weights", swapped)
    with pytest.raises(IntegrityError, match="changed while it was being loaded"):
        load_release(release_dir)
