"""Every DVC stage lists, as deps, every rnnlab file it executes, and runs on params.yaml.

A stage reruns when one of its deps changes, so a module missing from its deps is code that can change
without the stage's outputs following. The modules a stage executes are found without running it: the
module of its `python -m` command, then everything that module imports (module-level and inside functions,
package __init__ files included), transitively. A stage that runs the training recipe also executes the
rnnlab classes its config names in `_target_`. Stages are read as DVC resolves them (matrix expanded).
"""

from __future__ import annotations

import ast
import functools
import os
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import pytest
import yaml
from dvc.repo import Repo

from tests.helpers.project import PROJECT_ROOT

PACKAGE = "rnnlab"
TRAINING_RECIPE = "rnnlab.train"  # builds data, model, callbacks and logger from the config's `_target_`s
CONFIG_COMPOSERS = {"compose", "initialize", "initialize_config_dir", "initialize_config_module"}


def module_file(src: Path, name: str) -> Path | None:
    """The file that runs on `import name`: a package's __init__.py or a module's .py; None if neither exists."""
    path = src.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def with_packages(name: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module runs each enclosing package's __init__ first."""
    parts = name.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


def is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk_executed(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:`, which never run."""
    for child in ast.iter_child_nodes(tree):
        if is_type_checking(child):
            yield from (node for stmt in child.orelse for node in [stmt, *walk_executed(stmt)])
            continue
        yield child
        yield from walk_executed(child)


@functools.cache
def parse(src: Path, name: str) -> ast.Module:
    return ast.parse(module_file(src, name).read_text(), filename=str(module_file(src, name)))


@functools.cache
def imports_of(src: Path, name: str) -> frozenset[str]:
    """The rnnlab modules that module `name` imports anywhere in its code (its packages included)."""
    is_package = module_file(src, name).name == "__init__.py"
    found: set[str] = set()
    for node in walk_executed(parse(src, name)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(filter(None, [*package, base]))
            found.add(base)
            # `from a import b` runs a.b too when b is a submodule rather than a name defined in a
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(src, f"{base}.{alias.name}"))
    return frozenset(module for name in found if name.split(".")[0] == PACKAGE for module in with_packages(name))


def composes_config(src: Path, name: str) -> bool:
    """Whether module `name` composes a config from conf/ itself (Hydra's compose API)."""
    for node in walk_executed(parse(src, name)):
        if isinstance(node, ast.ImportFrom) and node.module == "hydra":
            if any(alias.name in CONFIG_COMPOSERS for alias in node.names):
                return True
        if isinstance(node, ast.Attribute) and node.attr in CONFIG_COMPOSERS:
            if isinstance(node.value, ast.Name) and node.value.id == "hydra":
                return True
    return False


def closure(src: Path, roots: Iterable[str]) -> tuple[set[str], set[str]]:
    """(modules executed starting from `roots`, imported rnnlab modules that have no file)."""
    seen: set[str] = set()
    absent: set[str] = set()
    todo = [module for root in roots for module in with_packages(root)]
    while todo:
        name = todo.pop()
        if name in seen or name in absent:
            continue
        if module_file(src, name) is None:
            absent.add(name)
            continue
        seen.add(name)
        todo.extend(imports_of(src, name))
    return seen, absent


def config_targets(*configs: Path) -> set[str]:
    """The rnnlab modules that define a `_target_` of these YAML files (the module part of the dotted path)."""
    def walk(node) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    targets = set()
    for config in configs:
        for target in walk(yaml.safe_load(config.read_text())):
            if target.split(".")[0] == PACKAGE:
                targets.add(target.rsplit(".", 1)[0])  # a class or function of that module
    return targets


def command_words(cmd: str | list[str]) -> list[str]:
    """The words of a stage's command (DVC also takes a list of commands)."""
    return [word for line in ([cmd] if isinstance(cmd, str) else cmd) for word in shlex.split(line)]


def command_module(cmd: str | list[str]) -> str | None:
    """The module of the stage's `python -m <module>` command, if it runs one."""
    words = command_words(cmd)
    for k in range(1, len(words) - 1):
        if words[k] == "-m" and os.path.basename(words[k - 1]).startswith("python"):
            return words[k + 1]
    return None


def runs_on_params(cmd: str | list[str]) -> bool:
    """Whether the command composes params.yaml, the file DVC tracks, rather than conf/."""
    words = command_words(cmd)
    options = dict(zip(words, words[1:]))
    return options.get("--config-dir") == "." and options.get("--config-name") == "params"


def dep_paths(stage) -> list[PurePosixPath]:
    return [PurePosixPath(os.path.normpath(dep.def_path)) for dep in stage.deps]


def covered(path: PurePosixPath, deps: list[PurePosixPath]) -> bool:
    """A dep on the file itself or on a folder above it."""
    return any(dep == path or dep in path.parents for dep in deps)


def executed_modules(root: Path, stage) -> tuple[set[str], set[str]]:
    """What the stage's command executes: (modules, imported modules without a file)."""
    src = root / "src"
    module = command_module(stage.cmd)
    roots = [module, f"{module}.__main__"] if module_file(src, f"{module}.__main__") else [module]
    modules, absent = closure(src, roots)
    if TRAINING_RECIPE in modules:
        configs = [root / "params.yaml"]
        if "conf" in map(str, dep_paths(stage)):
            configs += sorted((root / "conf").rglob("*.yaml"))
        modules, absent = closure(src, [*roots, *config_targets(*configs)])
    return modules, absent


def stage_problems(root: Path, stage) -> list[str]:
    """What is wrong with one resolved stage, one line each (empty: nothing)."""
    module = command_module(stage.cmd)
    if module is None or module.split(".")[0] != PACKAGE:
        return [f"runs no `python -m {PACKAGE}...` command: {stage.cmd}"]
    problems = []
    if not runs_on_params(stage.cmd):
        problems.append("does not run on params.yaml (`--config-dir . --config-name params`)")
    deps = dep_paths(stage)
    modules, absent = executed_modules(root, stage)
    for name in sorted(absent):
        problems.append(f"executes {name}, which has no file under src/")
    for name in sorted(modules):
        path = PurePosixPath(module_file(root / "src", name).relative_to(root).as_posix())
        if not covered(path, deps):
            problems.append(f"misses dep {path}")
    if any(composes_config(root / "src", name) for name in modules) and PurePosixPath("conf") not in deps:
        problems.append("composes conf/ itself but does not list `conf` as a dep")
    return problems


def resolved_stages(root: Path) -> list:
    # uninitialized: read dvc.yaml and params.yaml only, without the lock, state and cache an initialized repo sets up
    with Repo(str(root), uninitialized=True) as repo:
        return list(repo.index.stages)


def report(root: Path, stages: list) -> str:
    """Every stage's problems, stages with the same problems on one entry, a matrix as `name@*`; empty: none."""
    by_problems: dict[tuple[str, ...], list[str]] = {}
    for stage in stages:
        problems = tuple(stage_problems(root, stage))
        name = stage.name.split("@")[0] + "@*" if "@" in stage.name else stage.name
        if problems and name not in by_problems.get(problems, []):
            by_problems.setdefault(problems, []).append(name)
    return "\n".join(
        f"{', '.join(names)}:\n" + "\n".join(f"  - {problem}" for problem in problems)
        for problems, names in by_problems.items()
    )


@pytest.fixture(scope="module")
def stages() -> list:
    return resolved_stages(PROJECT_ROOT)


def test_every_stage_depends_on_the_code_it_runs(stages):
    assert {stage.name.split("@")[0] for stage in stages} >= {"download", "prepare", "train", "gradients",
                                                                 "adding", "compare"}
    problems = report(PROJECT_ROOT, stages)
    assert not problems, "dvc.yaml stages do not match the code they run:\n" + problems


def test_stages_run_their_own_modules(stages):
    """The closure is not vacuous: each stage reaches its entry point, the CLI and, for training, the model."""
    src = PROJECT_ROOT / "src"
    for stage in stages:
        modules, _ = executed_modules(PROJECT_ROOT, stage)
        assert {PACKAGE, command_module(stage.cmd), "rnnlab.cli"} <= modules, stage.addressing
        if stage.name.startswith("train@"):
            assert {"rnnlab.models.recurrent_module", "rnnlab.run.cpu"} <= modules  # cpu: a config `_target_` (callbacks.cpu_settings)
    composers = {stage.name for stage in stages
                 if any(composes_config(src, name) for name in executed_modules(PROJECT_ROOT, stage)[0])}
    assert "adding" in composers


# The settings a training run is made of, and those compare checks a run was trained with (comparison.runs)
TRAINING_SECTIONS = {"data", "model", "trainer", "callbacks"}
COMPARED_SECTIONS = {"data", "model", "trainer"}


def test_stages_track_whole_training_sections_and_paths_by_key():
    """What a stage tracks decides what reruns it. The training settings are whole sections: a key added with
    `+` (`+trainer.max_steps`, an added callback) changes results and must rerun the stages that train, and compare.
    `paths` only by the keys a stage reads: another stage's folder is no reason to rerun it."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for name in ("train", "baseline", "timing"):
        assert TRAINING_SECTIONS <= set(stages[name]["params"]), name
    assert COMPARED_SECTIONS <= set(stages["compare"]["params"])
    for name, stage in stages.items():
        tracked = stage.get("params", [])
        assert "paths" not in tracked, name
        for key in tracked:  # each names a key params.yaml has (DVC refuses a missing one at run time only)
            value = params
            for part in key.split("."):
                assert isinstance(value, dict) and part in value, f"{name}: {key}"
                value = value[part]


SYNTHETIC_PACKAGE = {
    "__init__.py": "",
    "entry.py": "import os\nfrom rnnlab.helpers import used\n\ndef main():\n    from rnnlab import late\n",
    "helpers.py": "from rnnlab.tools import parts\n\ndef used():\n    pass\n",
    "late.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rnnlab import typing_only\n",
    "typing_only.py": "",
    "tools/__init__.py": "",
    "tools/parts.py": "from . import shared\nfrom .shared import thing\n",
    "tools/shared.py": "thing = 1\n",
    "composer.py": "from hydra import compose\n",
}


def synthetic_project(root: Path, deps: list[str], module: str = "rnnlab.entry") -> Path:
    """A DVC project of one stage running `module` of a small rnnlab package with these deps."""
    for name, text in SYNTHETIC_PACKAGE.items():
        path = root / "src" / "rnnlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "params.yaml").write_text("seed: 0\n")
    stage = {"cmd": f"python -m {module} --config-dir . --config-name params", "deps": deps, "outs": ["out"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"only": stage}}))
    return root


def test_a_module_missing_from_the_deps_is_reported(tmp_path):
    complete = ["src/rnnlab/__init__.py", "src/rnnlab/entry.py", "src/rnnlab/helpers.py", "src/rnnlab/late.py",
                "src/rnnlab/tools"]
    root = synthetic_project(tmp_path / "complete", complete)
    assert report(root, resolved_stages(root)) == ""  # typing_only.py never runs: not needed

    root = synthetic_project(tmp_path / "partial", [dep for dep in complete if dep != "src/rnnlab/tools"]
                             + ["src/rnnlab/tools/__init__.py"])
    assert stage_problems(root, *resolved_stages(root)) == [
        "misses dep src/rnnlab/tools/parts.py", "misses dep src/rnnlab/tools/shared.py"
    ]
    # late.py is imported only inside a function, helpers.py only at module level: both count.
    for dropped in ("src/rnnlab/late.py", "src/rnnlab/__init__.py"):
        root = synthetic_project(tmp_path / dropped.replace("/", "-"), [dep for dep in complete if dep != dropped])
        assert stage_problems(root, *resolved_stages(root)) == [f"misses dep {dropped}"]


def test_a_stage_off_params_or_composing_without_conf_is_reported(tmp_path):
    root = synthetic_project(tmp_path / "composer", ["src"], module="rnnlab.composer")
    assert stage_problems(root, *resolved_stages(root)) == [
        "composes conf/ itself but does not list `conf` as a dep"
    ]
    root = synthetic_project(tmp_path / "with-conf", ["src", "conf"], module="rnnlab.composer")
    assert stage_problems(root, *resolved_stages(root)) == []

    root = synthetic_project(tmp_path / "off-params", ["src"])
    (root / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"only": {"cmd": "python -m rnnlab.entry", "deps": ["src"], "outs": ["out"]}}}
    ))
    assert stage_problems(root, *resolved_stages(root)) == [
        "does not run on params.yaml (`--config-dir . --config-name params`)"
    ]
