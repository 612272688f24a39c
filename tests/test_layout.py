"""The module map keeps its dependency rule: the remote-code set imports only torch, transformers and itself; around it,
layers import only downwards (core and file helpers ← data and tokenization ← evaluation ← training and analysis ←
export and studies ← commands). Every import counts, at the top of a module or inside a function, and so does a string
that names a module, as `python -m` takes it."""

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

import vaswani_hf
from vaswani_hf import modeling_rnn, modeling_vaswani

# Each model's remote-code set: the files its `save_pretrained` copies beside the weights.
REMOTE_CODE_SETS = {"vaswani": modeling_vaswani.REMOTE_CODE_FILES, "rnn": modeling_rnn.REMOTE_CODE_FILES}

PACKAGE = Path(vaswani_hf.__file__).parent
# The layer of each part of the package, by module name prefix (the longest prefix wins).
LAYERS = {
    # The remote-code sets (what `save_pretrained` copies beside the weights).
    **{f"vaswani_hf.{name.removesuffix('.py')}": 0 for files in REMOTE_CODE_SETS.values() for name in files},
    "vaswani_hf.files": 0,
    "vaswani_hf.errors": 0,
    "vaswani_hf.run_dir": 0,
    # The package's registration and public names, `train_shared_bpe` among them.
    "vaswani_hf": 1,
    "vaswani_hf.tokenization": 1,
    "vaswani_hf.data": 1,
    "vaswani_hf.evaluation": 2,
    "vaswani_hf.metrics": 2,
    "vaswani_hf.training": 3,
    "vaswani_hf.analysis": 3,
    "vaswani_hf.export": 4,
    # Studies train models and measure them with the analysis tools: the main job, the recurrence study.
    "vaswani_hf.studies": 4,
    # Benchmarks measure this package against other engines, through its evaluation and its exports.
    "vaswani_hf.benchmarks": 4,
    "vaswani_hf.cli": 5,
}
# Parts of one layer that must not import each other either.
SIBLINGS_APART = {("vaswani_hf.training", "vaswani_hf.analysis"), ("vaswani_hf.analysis", "vaswani_hf.training")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    return max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)


# A string that is, in full, the name of a module of this package: what `python -m` runs or `import_module` loads, a
# dependency as real as an import.
MODULE_NAME = re.compile(r"vaswani_hf(\.[A-Za-z_]\w*)+")


def dependencies_of(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import of this package in `source`, the text of the module `name`, and for every
    string that names one of its modules (`MODULE_NAME`); `from vaswani_hf import X` counts as an import of the module
    that defines X."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "vaswani_hf"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vaswani_hf":
                continue
            if target == "vaswani_hf" and not is_package:
                for alias in node.names:
                    if importlib.util.find_spec(f"vaswani_hf.{alias.name}") is not None:  # a module
                        found.append((node.lineno, f"vaswani_hf.{alias.name}"))
                    else:
                        found.append((node.lineno, getattr(vaswani_hf, alias.name).__module__))
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.fullmatch(node.value):
            found.append((node.lineno, node.value))
    return found


def upward_dependencies(source: str, name: str, is_package: bool = False) -> list[str]:
    """What the module `name`, of text `source`, imports or names against the layer rule, one line each."""
    mine = part_of(name)
    wrong = []
    for line, target in dependencies_of(source, name, is_package):
        theirs = part_of(target)
        if LAYERS[theirs] > LAYERS[mine] or (mine, theirs) in SIBLINGS_APART:
            wrong.append(
                f"line {line}: {name} ({mine}, layer {LAYERS[mine]}) depends on {target} (layer {LAYERS[theirs]})"
            )
    return wrong


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_depends_upwards(path):
    wrong = upward_dependencies(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
    assert not wrong, "\n".join(wrong)


def test_a_module_named_in_a_string_is_held_to_the_rule_as_an_import():
    """A launcher in the training layer that ran a command module with `python -m` would depend on the commands
    layer as surely as an import of it; a name in prose (a docstring's usage line) is no dependency."""
    launch = 'COMMAND = [sys.executable, "-m", "vaswani_hf.cli.train", *arguments]'
    assert upward_dependencies(launch, "vaswani_hf.training.launch") == [
        "line 1: vaswani_hf.training.launch (vaswani_hf.training, layer 3) depends on vaswani_hf.cli.train (layer 5)"
    ]
    assert upward_dependencies(launch.replace("cli.train", "training.loop"), "vaswani_hf.training.launch") == []
    usage = '"""Runs on several processes: accelerate launch -m vaswani_hf.cli.train --config base"""'
    assert upward_dependencies(usage, "vaswani_hf.training.loop") == []


REMOTE_CODE = [(model, name) for model, files in REMOTE_CODE_SETS.items() for name in files]


@pytest.mark.parametrize("model, name", REMOTE_CODE, ids=[f"{model}/{name}" for model, name in REMOTE_CODE])
def test_the_remote_code_set_imports_only_torch_transformers_and_itself(model, name):
    """These files are copied beside the weights and loaded with `trust_remote_code` where this package is not
    installed: anything else they imported would be missing there, and so would a sibling outside the same model's
    set."""
    tree = ast.parse((PACKAGE / name).read_text())
    allowed = {"torch", "transformers", *sys.stdlib_module_names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = [(node.module or "").split(".")[0]]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 1 and f"{node.module}.py" in REMOTE_CODE_SETS[model], f"{name}:{node.lineno}"
            continue
        else:
            continue
        assert set(roots) <= allowed, f"{name}:{node.lineno} imports {roots}"


def test_every_module_of_the_package_has_a_layer_and_imports():
    for path in MODULES:
        name = module_name(path)
        assert part_of(name) in LAYERS
        if name != "vaswani_hf.cli.export_ct2":  # exits with a message where the optional ctranslate2 is missing
            importlib.import_module(name)
