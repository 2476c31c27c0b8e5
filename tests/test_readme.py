"""The README is the user's door: every command in it parses and every relative link resolves.

Commands are checked without running anything: ``radiodiff <sub> ...`` through the CLI's
own argument parser (plus Hydra composition of ``prepare`` and ``skymap`` overrides),
``python train.py ...`` by composing its config with every job of a ``-m`` sweep,
``make <target>`` against the Makefile's targets, ``python bench/<x>.py`` by the file's
existence. A command none of these covers fails unless it is in :data:`ALLOWED` with the
reason. YAML blocks whose first line is ``# conf/<group>/<option>.yaml`` are config files
the README tells the user to write; they are installed into a copy of ``conf/`` before the
commands that use them are composed.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import re
import shlex
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Pages whose relative links and images must resolve.
PAGES = sorted({README, ROOT / "models" / "README.md", ROOT / "data" / "README.md",
                *(ROOT / "docs").glob("*.md"), *(ROOT / "models").glob("*/README.md")})

# Commands in the README's bash blocks that cannot be checked by parsing: command -> reason.
ALLOWED: dict[str, str] = {}

# Hydra's own command-line flags of train.py (not overrides); flag -> takes a value.
HYDRA_FLAGS = {"-m": False, "--multirun": False, "--cfg": True, "-c": True,
               "--package": True, "-p": True, "--resolve": False, "--info": False,
               "--help": False, "--hydra-help": False}


# ----------------------------------------------------------------------------- markdown

def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1).strip().lower(), m.group(2))
            for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.M | re.S)]


def _without_code(text: str) -> str:
    """Markdown with fenced blocks and inline code spans removed (their brackets are not
    links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(text: str) -> list[str]:
    """Targets of Markdown links / images and HTML src/href that are relative paths."""
    body = _without_code(text)
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", body)
    targets += re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", body)
    out = []
    for t in targets:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t) or t.startswith("#"):
            continue  # http:, https:, mailto: ... and anchors in the same page
        out.append(t)
    return out


def readme_commands(text: str) -> list[str]:
    """Every command of the bash blocks: continuation lines joined, comments and empty
    lines dropped."""
    cmds = []
    for lang, body in _fenced_blocks(text):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                cmds.append(" ".join(shlex.quote(w) for w in words))
    return cmds


def readme_config_files(text: str) -> dict[str, str]:
    """``{"data/mine.yaml": body}`` of YAML blocks headed ``# conf/<group>/<file>.yaml``."""
    out = {}
    for lang, body in _fenced_blocks(text):
        m = re.match(r"#\s*conf/([\w-]+/[\w-]+\.yaml)\s*\n", body)
        if lang in ("yaml", "yml") and m:
            out[m.group(1)] = body
    return out


# ----------------------------------------------------------------------------- commands

def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for m in re.finditer(r"^([A-Za-z0-9_.\- ]+):(?![=])", text, re.M):
        targets.update(m.group(1).split())
    return targets


def _radiodiff(args: list[str]) -> None:
    from radiodiff.cli import build_parser

    parser = build_parser()
    parser.add_argument("--debug", action="store_true")  # as radiodiff.cli.main adds it
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            ns = parser.parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help exits 0
            raise AssertionError(f"radiodiff {' '.join(args)}: {err.getvalue().strip()}")
        return
    if hasattr(ns, "sampler"):  # sample, demo, evaluate: the values make a valid spec
        from radiodiff.cli import _model_spec, _spec
        from radiodiff.diffusion.sampling import SamplerSpec
        model = getattr(ns, "model", None)
        try:  # a path such as models/mine is the user's own: the package default
            base = (SamplerSpec(), "default") if model and "/" in model else \
                _model_spec(model)
            _spec(ns, *base)
        except (ValueError, FileNotFoundError) as exc:
            raise AssertionError(f"radiodiff {' '.join(args)}: {exc}") from exc
    _check_model_and_class(ns, args)
    if ns.command == "prepare":
        _compose(list(ns.overrides))
    elif ns.command == "skymap" and not ns.merge:
        from radiodiff.skymap.config import load_skymap_config
        try:
            OmegaConf.to_container(load_skymap_config(ns.preset, list(ns.overrides)),
                                   resolve=True)
        except Exception as exc:
            raise AssertionError(f"radiodiff skymap overrides: {exc}") from exc


def _check_model_and_class(ns, args: list[str]) -> None:
    """A shipped model named by a bare name exists, and ``--class`` is one of its classes
    (a path such as ``models/mine`` is the user's own: not checked)."""
    import json

    from radiodiff.io.release_files import DEFAULT_MODEL, resolve_model

    if ns.command not in ("sample", "demo", "evaluate"):
        return
    model = getattr(ns, "model", None)
    if model is None and getattr(ns, "samples", None) is None \
            and getattr(ns, "real_split", None) is None:
        model = DEFAULT_MODEL
    if model is None or "/" in model or model.endswith(".ckpt"):
        return
    try:
        path = resolve_model(model)
    except FileNotFoundError as exc:
        raise AssertionError(f"radiodiff {' '.join(args)}: {exc}") from exc
    label = getattr(ns, "label", None)
    if label is not None:
        classes = json.loads((path / "meta.json").read_text())["classes"]
        assert label in classes, f"radiodiff {' '.join(args)}: {model} has no class " \
                                 f"{label!r} (classes: {classes})"


def _hydra_overrides(args: list[str]) -> list[str]:
    """train.py's arguments without Hydra's own flags."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        flag = a.split("=", 1)[0] if a.startswith("-") else None
        if flag is not None:
            if flag not in HYDRA_FLAGS:
                raise AssertionError(f"train.py: unknown flag {a!r}")
            i += 2 if HYDRA_FLAGS[flag] and "=" not in a else 1
            continue
        out.append(a)
        i += 1
    return out


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Every job of a Hydra basic sweep (``a=1,2 b=x,y``: four jobs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    jobs: list[list[str]] = [[]]
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            key = o.get_key_element()
            values = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            values = [o.input_line]
        jobs = [job + [v] for job in jobs for v in values]
    return jobs


def _compose(overrides: list[str]) -> None:
    from radiodiff.config import load_config

    for job in _sweep_jobs(overrides):
        try:
            cfg = load_config(job)
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except Exception as exc:
            raise AssertionError(f"config {' '.join(job)}: {exc}") from exc


class _Parsed(Exception):
    """Raised once a bench script's options have parsed: nothing after that runs."""


def _bench_options(script: Path, args: list[str]) -> None:
    """Parse ``args`` with ``script``'s own argument parser, and stop there."""
    import argparse
    import runpy
    import sys

    parse = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        parse(self, args, namespace)
        raise _Parsed

    argv, sys.argv = sys.argv, [str(script), *args]
    argparse.ArgumentParser.parse_args = parse_only
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            runpy.run_path(str(script), run_name="__main__")
    except _Parsed:
        return
    except SystemExit:
        raise AssertionError(f"{script.name} {' '.join(args)}: "
                             f"{err.getvalue().strip().splitlines()[-1:]}") from None
    finally:
        argparse.ArgumentParser.parse_args = parse
        sys.argv = argv
    raise AssertionError(f"{script.name}: ran without parsing its options")


def check_command(cmd: str) -> None:
    """Raise AssertionError when a README command would not parse (nothing is run)."""
    if cmd in ALLOWED:
        return
    words = shlex.split(cmd)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words:
        raise AssertionError(f"empty command: {cmd!r}")
    prog = words[0].removeprefix(".venv/bin/")
    if prog == "radiodiff":
        _radiodiff(words[1:])
    elif prog in ("python", "python3") and len(words) > 1 and words[1] == "train.py":
        _compose(_hydra_overrides(words[2:]))
    elif prog in ("python", "python3") and len(words) > 1 and words[1].startswith("bench/"):
        if not (ROOT / words[1]).is_file():
            raise AssertionError(f"{cmd}: {words[1]} does not exist")
        _bench_options(ROOT / words[1], words[2:])
    elif prog == "make":
        targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        missing = [t for t in targets if t not in _make_targets()]
        if missing:
            raise AssertionError(f"{cmd}: no Makefile target {', '.join(missing)}")
    else:
        raise AssertionError(f"{cmd}: not a command this test can check; add it to "
                             "ALLOWED with the reason")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def readme_conf(tmp_path_factory):
    """A copy of conf/ holding the config files the README tells the user to write."""
    from radiodiff.config import conf_dir

    conf = tmp_path_factory.mktemp("readme") / "conf"
    shutil.copytree(conf_dir(), conf)
    for rel, body in readme_config_files(README.read_text()).items():
        (conf / rel).write_text(body)
    return conf


@pytest.fixture
def use_conf(readme_conf, monkeypatch, tmp_path):
    monkeypatch.setenv("RADIODIFF_CONF", str(readme_conf))
    monkeypatch.setenv("RADIODIFF_SHARED_DATA", str(tmp_path))
    return readme_conf


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    missing = []
    for target in relative_links(page.read_text()):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: links to missing files: {missing}"


def test_readme_has_commands_of_each_kind():
    cmds = readme_commands(README.read_text())
    for kind in (r"^radiodiff sample", r"^radiodiff prepare", r"^radiodiff evaluate",
                 r"^python train\.py", r"^make "):
        assert any(re.match(kind, c) for c in cmds), f"no README command matches {kind}"


@pytest.mark.parametrize("cmd", readme_commands(README.read_text()))
def test_readme_command_parses(cmd, use_conf):
    check_command(cmd)


def test_readme_config_files_compose(use_conf):
    files = readme_config_files(README.read_text())
    for rel in files:
        group, option = rel.removesuffix(".yaml").split("/")
        check_command(f"python train.py {group}={option}")


def test_allowed_commands_are_in_the_readme():
    cmds = set(readme_commands(README.read_text()))
    stale = [c for c in ALLOWED if c not in cmds]
    assert not stale, f"ALLOWED lists commands no longer in the README: {stale}"


@pytest.mark.parametrize("cmd, message", [
    ("radiodiff sampel --n 3", r"invalid choice"),
    ("radiodiff sample --nn 3", r"unrecognized arguments"),
    ("radiodiff sample --n three", r"invalid int"),
    ("radiodiff sample --sampler dpmpp2m", r"unknown sampler"),
    ("radiodiff sample --model mirabst --n 3", r"mirabst"),
    ("radiodiff sample --model mirabest --class Compact", r"no class 'Compact'"),
    ("radiodiff prepare data=nosuchdata", r"nosuchdata"),
    ("radiodiff skymap sky.no_such_key=1", r"no_such_key"),
    ("python train.py model=unet_smal", r"unet_smal"),
    ("python train.py train.lrr=0.1", r"lrr"),
    ("python train.py -m train.lr=0.1,abc", r"lr"),
    ("python train.py --cgf job", r"unknown flag"),
    ("make demoo", r"no Makefile target demoo"),
    ("python bench/no_such_bench.py", r"does not exist"),
    ("python bench/bench_quality.py --configs dpmpp_2m:7:islnds=false", r"islnds"),
    ("python bench/bench_quality.py --split tset", r"invalid choice"),
    ("frobnicate --now", r"not a command this test can check"),
])
def test_a_misspelt_command_fails(cmd, message, use_conf):
    with pytest.raises(AssertionError, match=message):
        check_command(cmd)


def test_a_missing_link_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[there](there.md) ![img](img/x.png) `[code](nowhere.md)` "
                    "[web](https://example.org) [anchor](#top) [here](page.md#top)\n")
    assert relative_links(page.read_text()) == ["there.md", "img/x.png", "page.md#top"]


# ----------------------------------------------------------------------------- python blocks

def _python_blocks() -> list[str]:
    return [body for lang, body in _fenced_blocks(README.read_text()) if lang == "python"]


@pytest.mark.parametrize("source", _python_blocks())
def test_readme_python_imports_and_keywords_exist(source):
    """Each block compiles; every name imported from radiodiff exists; every keyword
    argument passed to such a function is one of its parameters."""
    tree = ast.parse(source)
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("radiodiff"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                imported[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in imported:
            params = inspect.signature(imported[node.func.id]).parameters
            if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                continue
            unknown = [k.arg for k in node.keywords if k.arg and k.arg not in params]
            assert not unknown, f"{node.func.id}() takes no {unknown}"
