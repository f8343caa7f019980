"""Installs per role (pyproject.toml): every import is declared for its role, and a fresh venv
with only the collector's extra runs the collector and its tests without the research or
workflow stacks.

Roles: the core ``[project] dependencies`` is the library (``feeder``); each extra adds one
role's imports. ROLES below says which extras each package of the repository may import from.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIST = "crypto-data-feeder"

#: Where each part of the repository belongs: the extras it may import from, besides the core.
#: A more specific path (a module) wins over its package.
ROLES: dict[str, tuple[str, ...]] = {
    "feeder": (),
    "feeder/report/figures.py": ("workflow",),   # matplotlib: the report rule only
    "feeder/snakemake_params.py": ("workflow",),  # snakemake: called by the Snakefile only
    "collector": ("collector",),
    "okxsim": ("sim",),
    "workflow": ("workflow",),
    "Snakefile": ("workflow",),
    "driver": ("workflow",),
    "research": ("research",),
    "harness": ("test",),
    "bench": ("test",),
    "tests": ("test",),
}

#: What a collector host must not hold: the research stack and the workflow's.
NOT_ON_A_COLLECTOR = ("pyqlib", "mlflow", "snakemake", "matplotlib", "pandas")


def _norm(name: str) -> str:
    """PEP 503 name: ``PyYAML`` and ``pyyaml``, ``yapic.json`` and ``yapic-json`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> tuple[str, list[str]]:
    """``"moto[s3]>=5.2"`` -> ("moto", ["s3"])."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    assert m, f"cannot read the requirement {spec!r}"
    return _norm(m.group(1)), [e.strip() for e in (m.group(2) or "").split(",") if e.strip()]


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def declared(extras: tuple[str, ...]) -> set[str]:
    """Distributions a role may import: the core plus the extras (self-references followed)."""
    project = _project()
    optional = project.get("optional-dependencies", {})
    names = {_requirement_name(s)[0] for s in project["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"pyproject.toml has no extra [{extra}]"
        for spec in optional[extra]:
            name, sub = _requirement_name(spec)
            if name == _norm(DIST):
                todo += sub
            else:
                names.add(name)
    return names


def _first_party() -> set[str]:
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    return packages | {p.stem for p in (REPO / "tests").glob("*.py")}


def _sources() -> Iterator[tuple[Path, str]]:
    """(file, its Python source) of every part of ROLES; rule files give their import lines."""
    for top in ROLES:
        path = REPO / top
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted([*path.rglob("*.py"), *path.rglob("*.smk")])
        else:
            continue                      # a package this checkout does not have (yet)
        for file in files:
            if "third_party" in file.parts or "__pycache__" in file.parts:
                continue
            text = file.read_text()
            if file.suffix != ".py":      # Snakefile, *.smk: only the (top-level) import statements
                text = "\n".join(line for line in text.splitlines() if re.match(r"(import|from)\s", line))
            yield file, text


def _imports(source: str) -> set[str]:
    """Top-level names of every absolute import, wherever it sits (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _role_of(file: Path) -> tuple[str, ...]:
    rel = file.relative_to(REPO).as_posix()
    best = max((key for key in ROLES if rel == key or rel.startswith(key + "/")), key=len)
    return ROLES[best]


def test_every_import_is_declared_for_its_role() -> None:
    """Each third-party import of each package names a distribution declared for that package's
    role (directly, not merely pulled in by another one), so installing a role is enough to run it."""
    providers = importlib.metadata.packages_distributions()
    stdlib, first_party = sys.stdlib_module_names, _first_party()
    problems, checked = [], 0
    for file, source in _sources():
        extras = _role_of(file)
        allowed = declared(extras)
        for module in sorted(_imports(source) - stdlib - first_party - {"__future__"}):
            checked += 1
            dists = {_norm(d) for d in providers.get(module, [])}
            if not dists:
                problems.append(f"{file.relative_to(REPO)}: imports {module}, which no installed distribution provides")
            elif not dists & allowed:
                role = ", ".join(f"[{e}]" for e in extras) or "the core dependencies"
                problems.append(f"{file.relative_to(REPO)}: imports {module} ({' or '.join(sorted(dists))}), not in "
                                f"{role} of pyproject.toml: declare it there (and pin it in constraints.txt)")
    assert checked > 50, "the import walk found almost nothing: is ROLES still right?"
    assert not problems, "\n".join(problems)


def test_constraints_pin_every_declared_distribution() -> None:
    """constraints.txt pins everything the roles declare, so every install command gets the
    versions the suite ran with."""
    pinned = {_norm(line.split("==")[0]) for line in (REPO / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    unpinned = sorted(declared(tuple(_project()["optional-dependencies"])) - pinned)
    assert not unpinned, f"not pinned in constraints.txt: {unpinned} (pip freeze after a full install has them)"


def test_the_collector_imports_nothing_of_the_research_or_workflow_stacks() -> None:
    """Importing every collector module (and the feeder modules they import, lazily too) loads
    neither Qlib, MLflow, Snakemake, matplotlib nor pandas: a collector host does without them."""
    modules = sorted(f"collector.{p.stem}" for p in (REPO / "collector").glob("*.py") if p.stem != "__main__")
    feeder = sorted({node.module for p in (REPO / "collector").glob("*.py") for node in ast.walk(ast.parse(p.read_text()))
                     if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("feeder.")})
    prog = ("import sys\n" + "".join(f"import {m}\n" for m in [*modules, *feeder])
            + f"print(sorted({{n.split('.')[0] for n in sys.modules}} & {set(_import_names())!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert len(feeder) >= 5, feeder
    assert res.stdout.strip() == "[]", f"the collector imports {res.stdout.strip()}"


def _import_names() -> list[str]:
    """Top-level module names of the distributions a collector host must not hold."""
    providers = importlib.metadata.packages_distributions()
    bad = {_norm(d) for d in NOT_ON_A_COLLECTOR}
    return sorted(m for m, dists in providers.items() if {_norm(d) for d in dists} & bad)


# --------------------------------------------------------------------------- rule environments


def _rules() -> Iterator[tuple[str, Path, Path]]:
    """(rule, its script, its conda env file) of every rule of workflow/rules/*.smk with a script."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        rule, directives, pending = None, {}, None
        for line in [*smk.read_text().splitlines(), "rule end:"]:
            header = re.match(r"\s*(?:rule|checkpoint)\s+(\w+)\s*:", line)
            if header:
                if rule and "script" in directives:
                    yield rule, (smk.parent / directives["script"]).resolve(), (smk.parent / directives.get("conda", "")).resolve()
                rule, directives, pending = header.group(1), {}, None
                continue
            key = re.match(r"\s*(conda|script)\s*:\s*(?:\"([^\"]+)\")?\s*$", line)
            if key:
                pending = key.group(1)
                if key.group(2):
                    directives[pending], pending = key.group(2), None
            elif pending and line.strip():
                directives[pending] = line.strip().strip('"')
                pending = None


def _third_party_closure(script: Path) -> set[str]:
    """Top-level third-party modules a script may import: its own imports and those of every
    ``feeder`` module reachable from it (lazy imports inside functions included)."""
    seen: set[Path] = set()
    found: set[str] = set()
    todo = [script]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "feeder":
                    found.add(parts[0])
                    continue
                for i in range(1, len(parts) + 1):
                    base = REPO.joinpath(*parts[:i])
                    for candidate in (base / "__init__.py", base.with_suffix(".py")):
                        if candidate.is_file():
                            todo.append(candidate)
    return found - sys.stdlib_module_names - {"__future__"}


def _env_pins(env: Path) -> dict[str, str]:
    import yaml

    pins = {}
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        for spec in dep.get("pip", []) if isinstance(dep, dict) else []:
            name, _, version = spec.partition("==")
            pins[_norm(name.strip())] = version.strip()
    return pins


def test_each_rule_environment_holds_what_its_script_imports_and_no_research_stack() -> None:
    """envs/*.yaml (``snakemake --sdm conda``): each rule's environment has every distribution its
    script and the feeder modules behind it import, pinned as in constraints.txt, and none has
    pyqlib or mlflow."""
    providers = importlib.metadata.packages_distributions()
    constraints = dict(line.split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    constraints = {_norm(k): v.strip() for k, v in constraints.items()}
    rules = list(_rules())
    assert len(rules) >= 10, rules
    problems = []
    for rule, script, env in rules:
        if not env.is_file():
            problems.append(f"rule {rule}: no conda environment file {env}")
            continue
        pins = _env_pins(env)
        for module in sorted(_third_party_closure(script)):
            if not {_norm(d) for d in providers.get(module, [])} & set(pins):
                problems.append(f"rule {rule}: {script.name} imports {module}, missing from {env.name}")
    for env in sorted((REPO / "envs").glob("*.yaml")):
        pins = _env_pins(env)
        problems += [f"{env.name}: {name} {version} but constraints.txt pins {constraints.get(name)}"
                     for name, version in pins.items() if constraints.get(name) != version]
        problems += [f"{env.name} holds {name} (the research stack)" for name in pins if name in ("pyqlib", "mlflow")]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- a fresh venv


def _wheelhouse() -> Path:
    """The wheels scripts/bootstrap.sh downloaded (``.venv/wheelhouse``): installs from it need no network."""
    return Path(os.environ.get("FEEDER_WHEELHOUSE") or Path(sys.prefix) / "wheelhouse")


def _run(cmd: list[str], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _copy_checkout(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in ``dest``: building a wheel writes
    ``build/`` into the source tree, which must not be the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.mark.install
def test_a_venv_with_only_the_collector_extra_runs_the_collector_and_its_tests(tmp_path: Path) -> None:
    """``pip install ".[collector]"`` (not editable) into a fresh venv: ``python -m collector --help``
    works from the installed package, and neither pyqlib, mlflow, Snakemake, matplotlib nor pandas is there.
    Adding ``[sim,test-tools]`` (the simulator and pytest) runs the collector's shard tests against
    the installed package."""
    wheels = _wheelhouse()
    if not list(wheels.glob("setuptools-*.whl")):
        pytest.fail(f"no wheelhouse at {wheels}: run `bash scripts/bootstrap.sh` (it downloads every pinned wheel "
                    "there once), or point FEEDER_WHEELHOUSE at a directory of those wheels")
    t0 = time.monotonic()
    try:
        src = _copy_checkout(tmp_path / "src")
        offline = ["--no-index", "--find-links", str(wheels), "-c", str(src / "constraints.txt"), "--quiet"]
        pip = [sys.executable, "-m", "pip"]
        _run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), *offline, str(src)], cwd=tmp_path)
        [wheel] = (tmp_path / "dist").glob("crypto_data_feeder-*.whl")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
        python = str(tmp_path / "venv" / "bin" / "python")
        # --no-compile: byte-compiling every installed module costs CPU this throwaway venv never gets back
        install = [*pip, "--python", python, "install", "--no-compile", *offline]
        _run([*install, f"{wheel}[collector]"], cwd=tmp_path)

        away = tmp_path / "elsewhere"       # not the checkout: imports come from the installed package
        away.mkdir()
        helped = _run([python, "-m", "collector", "--help"], cwd=away)
        assert "--config" in helped.stdout
        # the config check the collector runs at start-up works from the wheel alone (the schema ships inside it)
        checked = _run([python, "-c", "import sys; from feeder.config import load_config; "
                                      "print(load_config(sys.argv[1])['universe']['size'])", str(src / "config.yaml")],
                       cwd=away)
        assert checked.stdout.split() == ["50"], checked.stdout
        where = _run([python, "-c", "import collector, feeder; print(collector.__file__, feeder.__file__)"], cwd=away)
        assert all("site-packages" in p for p in where.stdout.split()), where.stdout
        listed = _run([python, "-c", "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] "
                                     "for d in m.distributions()))"], cwd=away)
        installed = {_norm(n) for n in listed.stdout.split()}
        assert {"cryptofeed", "polars", "prometheus-client"} <= installed
        assert not installed & {_norm(d) for d in NOT_ON_A_COLLECTOR}, installed & {_norm(d) for d in NOT_ON_A_COLLECTOR}

        _run([*install, f"{wheel}[collector,sim,test-tools]"], cwd=tmp_path)
        _run([python, "-m", "okxsim", "--help"], cwd=away)
        ran = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(src / "pyproject.toml"),
                    "--rootdir", str(src), str(src / "tests" / "test_shards.py"),
                    str(src / "tests" / "test_collector_recovery.py")], cwd=away)
        assert re.search(r"\b\d+ passed\b", ran.stdout) and "failed" not in ran.stdout, ran.stdout
        listed = _run([python, "-c", "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] "
                                     "for d in m.distributions()))"], cwd=away)
        assert not {_norm(n) for n in listed.stdout.split()} & {"pyqlib", "mlflow"}
        print(f"fresh collector venv: {time.monotonic() - t0:.1f} s")
    finally:  # a venv is ~400 MB: keep only the small files of a failed run
        shutil.rmtree(tmp_path / "venv", ignore_errors=True)
