"""The package's layers: no module imports from a layer above its own, and no import of the package
hides inside a function (the usual way to dodge an import cycle). Only the CLI imports lazily,
so that ``jaxdistill --help`` starts without loading JAX programs it does not run."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxdistill")

# Bottom to top; a module may import from its own layer and the layers below it.
LAYERS = (
    ("core",),
    ("diffusion", "losses", "plots"),
    ("models",),
    ("data",),
    ("objectives",),
    ("train",),
    ("eval",),
    ("config",),
    ("build",),
    ("benchmarks", "export", "snapshot"),
    ("quickstart",),
    ("cli",),
)
LAZY_IMPORTS_ALLOWED = {"cli"}


def layer_of(module: str) -> int:
    """The layer of a dotted module name inside the package (``jaxdistill.x.y``)."""
    parts = module.split(".")
    assert parts[0] == "jaxdistill", module
    if len(parts) == 1:
        return 0  # the package's __init__: its version string only
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS in {__file__}")


def package_modules() -> dict[str, str]:
    """Dotted module name -> file path of every module in the package."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                modules[".".join(rel)] = path
    return modules


def package_imports(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a function) for every import of the package."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend([(a.name, child.lineno, in_function) for a in child.names if a.name.split(".")[0] == "jaxdistill"])
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "jaxdistill":
                if child.module == "jaxdistill":  # from jaxdistill import benchmarks
                    found.extend((f"jaxdistill.{a.name}", child.lineno, in_function) for a in child.names)
                else:
                    found.append((child.module, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def test_every_module_has_a_layer():
    for module in package_modules():
        layer_of(module)


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_no_import_points_up_or_hides_in_a_function(module):
    path = package_modules()[module]
    tree = ast.parse(open(path).read(), path)
    own = layer_of(module)
    for target, line, in_function in package_imports(tree):
        assert layer_of(target) <= own, (
            f"{path}:{line} imports {target} (layer {LAYERS[layer_of(target)]}) from the layer below it, {LAYERS[own]}"
        )
        if in_function:
            assert module.split(".")[1] in LAZY_IMPORTS_ALLOWED, f"{path}:{line} imports {target} inside a function"


def test_the_check_catches_an_upward_and_a_hidden_import():
    tree = ast.parse("from jaxdistill.train.engine import Trainer\ndef f():\n    from jaxdistill.core import rng\n")
    imports = package_imports(tree)
    assert imports == [("jaxdistill.train.engine", 1, False), ("jaxdistill.core", 3, True)]
    assert layer_of("jaxdistill.train.engine") > layer_of("jaxdistill.objectives.dmd")
