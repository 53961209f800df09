"""No import cycle between lnplugin's packages.

Each module belongs to a package: the first name under `lnplugin` (`store`,
`api`, `run`, `nwc`, and each top-level module such as `follower` or
`config` on its own), except under `nodes`, where each node kind (`nodes.cln`,
`nodes.lnd`, `nodes.dev`) and each shared module (`nodes.base`, the
interface) is a package of its own: the kinds sit side by side behind that
interface, and one kind reaching into another would be a cycle hidden
inside a single `nodes` package. An import from one package of another is an edge;
every import that runs counts, including lazy ones inside functions (they
still tie the two packages together, only later). Imports under
`if TYPE_CHECKING:` never run and are left out: they name types for
annotations only. The graph must have no cycle, so each package can be
read, tested and changed knowing only the packages below it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import lnplugin

ROOT = Path(lnplugin.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str, top: str) -> str | None:
    """`lnplugin.store.db` -> `lnplugin.store`, `lnplugin.nodes.cln.node` ->
    `lnplugin.nodes.cln`; None outside `top`."""
    parts = module.split(".")
    if parts[0] != top:
        return None
    return ".".join(parts[:3] if parts[1:2] == ["nodes"] else parts[:2])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name a (runtime) import statement in `tree` refers to."""
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            # `from lnplugin import bolt11` imports the module lnplugin.bolt11.
            yield from (f"{target}.{alias.name}" for alias in node.names)


def package_graph(root: Path) -> dict[str, set[str]]:
    """Edges package -> packages it imports, for the package at `root`."""
    top = root.name
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p, root) for p in root.rglob("*.py")}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        source = _package(module, top)
        assert source is not None
        edges = graph.setdefault(source, set())
        tree = ast.parse(path.read_text(), str(path))
        for name in _imports(tree, module, path.name == "__init__.py"):
            if name not in modules:
                continue  # another distribution, or a name that is not a module
            target = _package(name, top)
            if target is not None and target != source:
                edges.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_lnplugin_packages_import_without_cycles() -> None:
    graph = package_graph(ROOT)
    assert {
        "lnplugin.nodes",
        "lnplugin.nodes.base",
        "lnplugin.nodes.cln",
        "lnplugin.nodes.lnd",
        "lnplugin.nodes.dev",
        "lnplugin.store",
        "lnplugin.run",
        "lnplugin.follower",
    } <= set(graph)
    assert cycles(graph) == [], "package import cycle(s); edges: " + repr(
        {k: sorted(v) for k, v in sorted(graph.items())}
    )


def test_nothing_imports_the_entry_points() -> None:
    # `lnplugin.run` starts the library; the library never reaches back into it.
    importers = sorted(
        pkg
        for pkg, targets in package_graph(ROOT).items()
        if "lnplugin.run" in targets and pkg != "lnplugin.__main__"
    )
    assert importers == []


def test_the_check_finds_a_cycle(tmp_path: Path) -> None:
    # The check itself must be able to fail: a lazy import inside a function
    # closing a loop through three packages is reported.
    pkg = tmp_path / "demo"
    (pkg / "nodes").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nodes" / "__init__.py").write_text("from demo.config import X\n")
    (pkg / "config.py").write_text("from . import service\nX = 1\n")
    (pkg / "service.py").write_text("def f():\n    from demo.nodes import thing\n")
    (pkg / "nodes" / "thing.py").write_text("")
    (pkg / "leaf.py").write_text(
        "import typing\nimport demo.config\nif typing.TYPE_CHECKING:\n    import demo.nodes\n"
    )
    graph = package_graph(pkg)
    assert graph["demo.leaf"] == {"demo.config"}  # the type-only import is no edge
    assert cycles(graph) == [["demo.config", "demo.nodes", "demo.service"]]


def test_the_check_finds_two_node_kinds_importing_each_other(tmp_path: Path) -> None:
    # Each node kind is a package of its own: a kind that reaches into
    # another (and back) is a cycle, though both live under `nodes`.
    pkg = tmp_path / "demo"
    for kind in ("cln", "lnd"):
        (pkg / "nodes" / kind).mkdir(parents=True)
        (pkg / "nodes" / kind / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "nodes" / "__init__.py").write_text("def make():\n    from demo.nodes import cln\n")
    (pkg / "nodes" / "base.py").write_text("")
    (pkg / "nodes" / "cln" / "node.py").write_text(
        "from demo.nodes.base import *\nfrom demo.nodes.lnd import macaroon\n"
    )
    (pkg / "nodes" / "lnd" / "macaroon.py").write_text("def f():\n    import demo.nodes.cln.node\n")
    graph = package_graph(pkg)
    assert graph["demo.nodes"] == {"demo.nodes.cln"}
    assert cycles(graph) == [["demo.nodes.cln", "demo.nodes.lnd"]]
