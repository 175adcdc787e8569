"""The package's layers: imports point one way, and private names stay in their folder.

Every module of ``src/spectral_moe`` (and, for private names, of ``benchmarks/``) is parsed with
``ast``; every import is read, at module level and inside functions, absolute or relative,
``import a.b``, ``from a import b`` and ``from . import b`` alike. Each module belongs to a *unit*
(its folder under ``spectral_moe/``, or its own name for a top-level module) and each unit to a layer
(:data:`LAYERS`, bottom up). A module may import its own unit and the units of lower layers only.
The rules checked:

1. no import from a higher layer, and no circle between units;
2. ``evaluation`` and ``training`` (one layer) never import each other;
3. no private name (``_x``; dunders are fine) of another unit: not ``from X import _y``, not a private
   module ``X._y``, not an attribute ``X._y`` of another unit's module bound to a name;
4. every module is in a unit of :data:`LAYERS` (a new folder must be placed in the table).

The layers, bottom up (where each top-level module lives):

===========  ==================================================================================
layer        units (folders or top-level modules) and their job
===========  ==================================================================================
support      ``cache`` (the package cache under ~/.cache/spectral-moe, atomic writes), ``precision``
             (fp32 / bf16 / auto, bf16 detection once per device, the autocast of training and evaluation)
math         ``spectral`` (bands, Hermitian spectra, FFT plans, fractional Fourier transforms)
routing      ``routing`` (top-k router, load-balancing and z losses, router statistics)
tuners       ``tuners`` (peft tuners; ``tuners/peft_registry.py`` registers them with peft)
models       ``models`` (built-in models from PyPI packages, GGUF files; loading)
data         ``data`` (tasks, splits, mixing, prompts, features, collators, head layout)
task         ``evaluation`` (scoring a model on tasks) | ``training`` (run config, methods,
             ``training/optim.py``, budget matching, Trainer subclass, callbacks, the fit)
analysis     ``analysis`` (figures from run directories)
package      the package root ``spectral_moe/__init__.py`` (public names, peft registration)
pipeline     ``pipeline`` (a run = fit + evaluate + figures; run reuse; compare; demo)
cli          ``cli`` (the ``spectral-moe`` command)
===========  ==================================================================================
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "spectral_moe"

# bottom up; units within one layer may not import each other (evaluation | training)
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("support", ("cache", "precision")),
    ("math", ("spectral",)),
    ("routing", ("routing",)),
    ("tuners", ("tuners",)),
    ("models", ("models",)),
    ("data", ("data",)),
    ("task", ("evaluation", "training")),
    ("analysis", ("analysis",)),
    ("package", ("",)),
    ("pipeline", ("pipeline",)),
    ("cli", ("cli",)),
]
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(module: str, base: Path = SRC) -> bool:
    return (base / Path(*module.split(".")) / "__init__.py").is_file()


def is_module(module: str, base: Path = SRC) -> bool:
    return is_package(module, base) or (base / Path(*module.split("."))).with_suffix(".py").is_file()


def unit_of(module: str) -> str | None:
    """``spectral_moe.training.run`` → ``training``; ``spectral_moe.cache`` → ``cache``; the root → ``""``;
    ``None`` for a module outside the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def resolve(importer: str, importer_is_package: bool, level: int, module: str | None) -> str:
    """The absolute module name of ``from <level dots><module> import ...`` inside ``importer``."""
    if level == 0:
        return module or ""
    parts = importer.split(".")
    base = parts if importer_is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports_of(source: str, importer: str, importer_is_package: bool, base: Path = SRC):
    """``(line, target module, imported name or None)`` for every import, and the names bound to a
    module of the package (for attribute checks): ``{local name: module}``."""
    tree = ast.parse(source)
    found: list[tuple[int, str, str | None]] = []
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((node.lineno, alias.name, None))
                if alias.asname:
                    bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            target = resolve(importer, importer_is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if is_module(sub, base):  # ``from . import x`` / ``from pkg import module``
                    found.append((node.lineno, sub, None))
                    bound[alias.asname or alias.name] = sub
                else:
                    found.append((node.lineno, target, alias.name))
    attrs = [
        (node.lineno, bound[node.value.id], node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
    ]
    return found, attrs


def private_definitions(source: str) -> set[str]:
    """Private names a module defines: functions, classes, module names and ``self._x`` attributes."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if private(n)}


def foreign_private_attributes(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of each ``obj._x`` read where ``obj`` is not ``self``/``cls``/``super()``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Attribute) and private(node.attr)):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue
        out.append((node.lineno, node.attr))
    return out


def package_modules(base: Path = SRC) -> list[tuple[str, Path]]:
    return sorted((module_name(p, base), p) for p in (base / PACKAGE).rglob("*.py"))


def violations(base: Path = SRC, extra: list[tuple[str, Path]] = ()) -> list[str]:
    """Every broken rule, as one line each; ``extra``: outside modules checked for private names only."""
    out: list[str] = []
    edges: dict[str, set[str]] = {}
    defined: dict[str, set[str]] = {}  # unit -> the private names its modules define
    for name, path in package_modules(base):
        defined.setdefault(unit_of(name), set()).update(private_definitions(path.read_text(encoding="utf-8")))
    for name, path in [*package_modules(base), *extra]:
        own = unit_of(name)
        inside = own is not None
        if inside and own not in LAYER_OF:
            out.append(f"{name}: unit {own!r} has no layer in LAYERS")
            continue
        found, attrs = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", base)
        where = f"{path.relative_to(base.parent) if base.parent in path.parents else path}"
        for line, target, imported in found:
            unit = unit_of(target)
            if unit is None or unit == own:
                continue
            private_parts = [p for p in target.split(".")[1:] if private(p)]
            if private_parts or (imported is not None and private(imported)):
                what = f"{target}.{imported}" if imported else target
                out.append(f"{where}:{line}: private name {what} of another folder")
            if not inside:
                continue
            if unit not in LAYER_OF:
                out.append(f"{where}:{line}: imports {target}, whose unit {unit!r} has no layer")
                continue
            edges.setdefault(own, set()).add(unit)
            if LAYER_OF[unit] > LAYER_OF[own]:
                out.append(
                    f"{where}:{line}: {own or 'the package root'} ({LAYERS[LAYER_OF[own]][0]}) imports "
                    f"{target} from the higher layer {LAYERS[LAYER_OF[unit]][0]}"
                )
            elif LAYER_OF[unit] == LAYER_OF[own]:
                out.append(f"{where}:{line}: {own} imports {target} of its own layer ({unit})")
        for line, target, attr in attrs:
            unit = unit_of(target)
            if unit is not None and unit != own and private(attr):
                out.append(f"{where}:{line}: private attribute {target}.{attr} of another folder")
        # ``layer._coefficients(...)``: a private attribute that only other units define
        mine = defined.get(own, set())
        others = set().union(*(names for unit, names in defined.items() if unit != own))
        for line, attr in foreign_private_attributes(path.read_text(encoding="utf-8")):
            if attr in others and attr not in mine:
                out.append(f"{where}:{line}: private attribute .{attr} of another folder's object")
    out.extend(cycles(edges))
    return list(dict.fromkeys(out))


def cycles(edges: dict[str, set[str]]) -> list[str]:
    """One line per circle in the unit graph (depth-first search)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circle = [*stack[stack.index(nxt) :], nxt]
                found.append("circle between folders: " + " -> ".join(u or "<root>" for u in circle))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


# Known, named exceptions (each with its way out): benchmarks/frft_accuracy.py times the Hermite eigenbasis
# build and reports its residual through spectral/frft.py's private cache; it goes once that module has a
# public accessor (e.g. ``hermite_basis(d) -> (V, m, residual)`` and ``clear_hermite_basis_cache()``).
ALLOWED: dict[str, set[str]] = {}


def allowed(problem: str) -> bool:
    where, _, rest = problem.partition(":")
    return any(f"attribute {name} " in rest for name in ALLOWED.get(where, ()))


def benchmark_modules() -> list[tuple[str, Path]]:
    return [(f"benchmarks.{p.stem}", p) for p in sorted((ROOT / "benchmarks").glob("*.py"))]


def test_layers_point_one_way_and_private_names_stay_home():
    problems = [p for p in violations(SRC, benchmark_modules()) if not allowed(p)]
    assert not problems, "\n".join(problems)


def test_every_unit_has_a_layer():
    units = {unit_of(name) for name, _ in package_modules()}
    assert units <= set(LAYER_OF), sorted(units - set(LAYER_OF))


# --------------------------------------------------------------------------------------------
# the checker itself finds what it must (a tiny fake package)
# --------------------------------------------------------------------------------------------
def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    base = tmp_path / "src"
    for rel, text in {"__init__.py": "", **files}.items():
        path = base / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(base / PACKAGE).parents:
            init = base / PACKAGE / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(text)
    return base


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a function-level upward import: training -> pipeline
        (
            {"training/run.py": "def f():\n    from ..pipeline.run import train\n", "pipeline/run.py": ""},
            "higher layer",
        ),
        # evaluation <-> training, absolute import
        (
            {"evaluation/runs.py": "import spectral_moe.training.run\n", "training/run.py": ""},
            "of its own layer",
        ),
        # ``from . import x`` one level up, to a higher layer
        ({"data/a.py": "from .. import cli\n", "cli.py": ""}, "higher layer"),
        # a private name from another folder
        ({"analysis/f.py": "from ..tuners.layer import _coefficients\n", "tuners/layer.py": ""}, "private"),
        # a private attribute of another folder's object
        (
            {
                "analysis/f.py": "def f(layer):\n    return layer._coefficients('a')\n",
                "tuners/layer.py": "class L:\n    def _coefficients(self, a):\n        pass\n",
            },
            "another folder's object",
        ),
        # a private attribute of another folder's module
        (
            {"analysis/f.py": "from ..tuners import layer\nlayer._coefficients\n", "tuners/layer.py": ""},
            "private attribute",
        ),
        # a private module of another folder
        ({"tuners/c.py": "from .._registry import peft_type\n", "_registry.py": ""}, "private name"),
        # a folder without a layer
        ({"extras/x.py": ""}, "no layer"),
    ],
)
def test_checker_finds(tmp_path, files, expected):
    problems = violations(_fake_package(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_checker_accepts_downward_and_same_folder_imports(tmp_path):
    base = _fake_package(
        tmp_path,
        {
            "pipeline/run.py": "from ..training.loop import fit\nfrom ._helpers import _x\nimport spectral_moe.data\n",
            "pipeline/_helpers.py": "_x = 1\n",
            "training/loop.py": "from ..data import features\nfrom . import _inner\n_inner._y\n",
            "training/_inner.py": "_y = 1\n",
            "data/features.py": "from spectral_moe.cache import atomic_write_json\n",
            "cache.py": "",
        },
    )
    assert violations(base) == []


def test_checker_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert not cycles({"a": {"b"}, "b": {"c"}})
