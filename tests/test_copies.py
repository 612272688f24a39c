"""The deliberate copies in the package stay copies of their originals.

Each model's remote-code set is saved beside its weights and loads on its own. The recurrent model's set does not ship
modeling_vaswani.py, so the recurrent model repeats some of its code (the output projection's glue, the loss, saving
with code); its config repeats VaswaniConfig's `to_dict`, a method. Such a copy is marked as transformers marks its own
(its `utils/check_copies.py`): on the line above the `def` or `class` (above its decorators, if any),

    # Copied from vaswani_hf.<module>.<qualified name>[ with A->B[, C->D]]

and this test fails where a copy no longer equals its original with the renames applied (indentation aside), naming
the copy, the original and the first line that differs, or where the original no longer exists. The check reads the
files as text, so that it runs on any text (the tests below feed it drifted copies) and imports nothing.
"""

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vaswani_hf"
COPIED_FROM = re.compile(r"^\s*# Copied from (?P<target>\S+)(?: with (?P<renames>.+))?$")
RENAME = re.compile(r"^(?P<old>\S+)->(?P<new>\S+)$")
Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Copy:
    module: str  # where the copy is, e.g. "vaswani_hf.modeling_rnn"
    name: str  # its qualified name there, e.g. "RNNModel.__init__"
    target: str  # the original's dotted path, e.g. "vaswani_hf.modeling_vaswani.VaswaniModel.__init__"
    renames: tuple[tuple[str, str], ...]
    first_line: int  # the line of its first decorator or its `def`/`class`
    code: tuple[str, ...]  # its lines, from `first_line`, dedented


def package_sources() -> dict[str, str]:
    """The text of every module of the package, by dotted name."""
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        sources[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.read_text()
    return sources


def definitions(text: str) -> dict[str, Definition]:
    """Every class and function of a module, by qualified name (methods as `Class.method`)."""
    found = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, Definition):
                found[prefix + node.name] = node
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(text).body, "")
    return found


def first_line(node: Definition) -> int:
    return min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])


def code_of(lines: list[str], node: Definition) -> tuple[str, ...]:
    """The source of `node`, decorators included, dedented and without trailing spaces."""
    segment = textwrap.dedent("\n".join(lines[first_line(node) - 1 : node.end_lineno]))
    return tuple(line.rstrip() for line in segment.splitlines())


def copies_in(module: str, text: str) -> tuple[list[Copy], list[str]]:
    """The marked copies of a module, and a problem for each `# Copied from` comment that marks nothing or whose
    renames do not read `A->B`."""
    lines = text.splitlines()
    starts = {first_line(node): (name, node) for name, node in definitions(text).items()}
    copies, problems = [], []
    for number, line in enumerate(lines, start=1):
        match = COPIED_FROM.match(line)
        if match is None:
            continue
        where = f"{module}:{number}"
        if number + 1 not in starts:
            problems.append(
                f"{where}: `# Copied from` must stand on the line above the def or class it marks (above its "
                "decorators, if any)."
            )
            continue
        pairs = [RENAME.match(part.strip()) for part in (match["renames"] or "").split(",") if part.strip()]
        if not all(pairs):
            problems.append(f"{where}: renames read `with A->B, C->D`, not `with {match['renames']}`.")
            continue
        name, node = starts[number + 1]
        renames = tuple((pair["old"], pair["new"]) for pair in pairs)
        copies.append(Copy(module, name, match["target"], renames, number + 1, code_of(lines, node)))
    return copies, problems


def original_of(target: str, sources: dict[str, str]) -> tuple[int, tuple[str, ...]] | None:
    """The first line and the code of the definition a dotted path names, or None where there is none."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module, name = ".".join(parts[:cut]), ".".join(parts[cut:])
        if module in sources:
            node = definitions(sources[module]).get(name)
            if node is None:
                return None
            return first_line(node), code_of(sources[module].splitlines(), node)
    return None


def drift(copy: Copy, sources: dict[str, str]) -> str | None:
    """Why `copy` is not its original with its renames applied, or None where it is."""
    marked = f"{copy.module}:{copy.first_line} {copy.name}, marked `Copied from {copy.target}`"
    found = original_of(copy.target, sources)
    if found is None:
        return f"{marked}: {copy.target} no longer exists. Point the comment at the original, or remove it."
    start, original = found
    expected = []
    for line in original:
        for old, new in copy.renames:
            line = line.replace(old, new)
        expected.append(line)
    for index in range(max(len(expected), len(copy.code))):
        theirs = expected[index] if index < len(expected) else None
        mine = copy.code[index] if index < len(copy.code) else None
        if mine != theirs:
            return (
                f"{marked}, differs from it at line {copy.first_line + index}:\n"
                f"  copy:     {'(the copy ends here)' if mine is None else mine.strip()}\n"
                f"  original: {'(the original ends here)' if theirs is None else theirs.strip()}"
                f"{'' if theirs is None else f' (line {start + index}, renames applied)'}\n"
                "Make the copy the original again, or remove the comment where the two should differ."
            )
    return None


def copy_problems(sources: dict[str, str]) -> list[str]:
    """Every misplaced `# Copied from` comment and every drifted or orphaned copy in `sources`."""
    problems = []
    for module, text in sources.items():
        copies, misplaced = copies_in(module, text)
        problems += misplaced
        problems += [problem for copy in copies if (problem := drift(copy, sources)) is not None]
    return problems


SOURCES = package_sources()
RNN = "vaswani_hf.modeling_rnn"


def test_every_copy_equals_its_original():
    problems = copy_problems(SOURCES)
    assert not problems, "\n\n".join(problems)


def test_the_recurrent_model_marks_its_copies_of_the_transformer():
    """The check has copies to check, so that a comment format the pattern no longer matched could not pass as no
    copies at all. They copy modeling_vaswani.py alone, the one file of the Transformer's set that the recurrent
    model's set does not ship: the functions of the others, it imports."""
    copies, _ = copies_in(RNN, SOURCES[RNN])
    assert copies
    assert {copy.target.split(".")[1] for copy in copies} == {"modeling_vaswani"}


def test_a_drifted_copy_fails_naming_the_copy_the_original_and_the_line():
    copy = copies_in(RNN, SOURCES[RNN])[0][0]
    lines = SOURCES[RNN].splitlines()
    last = copy.first_line + len(copy.code) - 1  # the copy's last line, counted from 1
    lines[last - 1] += "  # drifted"

    problems = copy_problems({**SOURCES, RNN: "\n".join(lines)})

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{RNN}:{copy.first_line} {copy.name}, marked `Copied from {copy.target}")
    assert f"differs from it at line {last}:" in problems[0]
    assert f"copy:     {lines[last - 1].strip()}\n" in problems[0]


def test_a_copy_whose_original_is_gone_fails():
    copy = copies_in(RNN, SOURCES[RNN])[0][0]
    gone = f"{copy.target}_gone"
    orphaned = SOURCES[RNN].replace(f"# Copied from {copy.target}", f"# Copied from {gone}", 1)

    problems = copy_problems({**SOURCES, RNN: orphaned})

    assert problems == [
        f"{RNN}:{copy.first_line} {copy.name}, marked `Copied from {gone}`: {gone} no longer exists. Point the "
        "comment at the original, or remove it."
    ]


ORIGINAL = '''
class Outer:
    class FooModel:
        @property
        def twin(self):
            """A FooModel."""
            return FooModel()
'''
COPY = '''class BarModel:
    # Copied from vaswani_hf.a.Outer.FooModel.twin{renames}
    @property
    def twin(self):
        """A BarModel."""
        return BarModel()
'''


@pytest.mark.parametrize(
    "copy, problem",
    [
        # Renamed, and one class shallower: a copy.
        (COPY.format(renames=" with Foo->Bar"), None),
        # The rename left out: the docstring is the first line where Foo stays Foo.
        (COPY.format(renames=""), 'differs from it at line 5:\n  copy:     """A BarModel."""'),
        # A line lost.
        (COPY.format(renames=" with Foo->Bar").replace("        return BarModel()\n", ""), "(the copy ends here)"),
        # Renames apply in order, to the original.
        (COPY.format(renames=" with Foo->Bar, Bar->Baz"), 'original: """A BazModel.""" (line 6, renames applied)'),
        # A malformed rename, a mark away from its definition, an original that is gone.
        (COPY.format(renames=" with Foo=>Bar"), "renames read `with A->B, C->D`"),
        (COPY.format(renames=" with Foo->Bar").replace("    @property", "    # why\n    @property"), "must stand"),
        (COPY.format(renames=" with Foo->Bar").replace("vaswani_hf.a.", "vaswani_hf.b."), "no longer exists"),
    ],
)
def test_what_the_check_reads_as_a_copy(copy, problem):
    problems = copy_problems({"vaswani_hf.a": ORIGINAL, "vaswani_hf.c": copy})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems
