"""Measure the code's shape for ``docs/architecture.md``'s before/after table.

Lines per package, bench files and lines, function-local imports, the largest files and
classes, the longest function per package, the files that name each PLC link and the public
members of the main classes. Writes ``<out>/<name>.json`` and ``<out>/<name>.md``.
"""

from __future__ import annotations

import argparse
import ast
import graphlib
import json
from collections import Counter
from pathlib import Path

TREES = ("inspection", "bench", "apps", "scripts")
CLASSES = ("Inspector", "BundleModel", "Registry", "LiveModels")


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def function_local_imports(tree: ast.AST, source: list[str]) -> tuple[int, int, int]:
    """Imports inside functions: (all, of project modules, without a reason comment)."""
    total = project = unexplained = 0

    def explained(line: int) -> bool:
        """A comment on the statement's line, or above its block of imports."""
        above = line - 2
        block = ("from ", "import ", ")")
        while above >= 0 and (not source[above].strip() or source[above].strip().startswith(block)):
            above -= 1
        return "#" in source[line - 1] or (above >= 0 and source[above].strip().startswith("#"))

    def visit(node: ast.AST, inside: bool) -> None:
        nonlocal total, project, unexplained
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and inside:
                total += 1
                unexplained += not explained(child.lineno)
                if isinstance(child, ast.ImportFrom):
                    project += child.level > 0 or (child.module or "").startswith("inspection")
                else:
                    project += any(a.name.startswith("inspection") for a in child.names)
            func = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, inside or func)

    visit(tree, False)
    return total, project, unexplained


def module_name(root: Path, path: Path) -> str:
    """``inspection.core.registry`` for a package file; ``bench._report`` for a bench script."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, folder: str) -> set[str]:
    """Every module an import statement names (at any depth), bare names read as ``folder``'s."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names | {f"{folder}.{n}" for n in names}


def import_cycle(root: Path, trees: dict[Path, ast.AST]) -> list[str]:
    """One import cycle among the project's modules (function-local imports too), or ``[]``."""
    modules = {module_name(root, p): p for p in trees}
    graph = {
        name: imported(trees[path], name.split(".")[0]) & modules.keys() - {name}
        for name, path in modules.items()
    }
    # a package's own __init__ importing its modules is no cycle of the graph's kind
    graph = {k: {v for v in vs if not v.startswith(k + ".")} for k, vs in graph.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return []


def package_of(root: Path, path: Path) -> str:
    """``inspection/<package>`` for a package file, else its top folder (``bench``...)."""
    parts = path.relative_to(root).parts
    return "/".join(parts[:2]) if parts[0] == "inspection" and len(parts) > 2 else parts[0]


def longest_functions(root: Path, trees: dict[Path, ast.AST]) -> dict[str, list]:
    """Per package: its longest function or method, ``[path:name, lines]``."""
    longest: dict[str, list] = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                key = package_of(root, path)
                if size > longest.get(key, ["", 0])[1]:
                    longest[key] = [f"{path.relative_to(root)}:{node.name}", size]
    return dict(sorted(longest.items()))


def link_files(root: Path, trees: dict[Path, ast.AST]) -> dict[str, list[str]]:
    """Per PLC link registered in ``inspection/line/links.py``: the files of ``inspection/``
    that name it in a string (what adding a link like it touches)."""
    registry = root / "inspection" / "line" / "links.py"
    if registry not in trees:
        return {}
    names = {
        node.args[0].value
        for node in ast.walk(trees[registry])
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "LinkKind"
        and node.args and isinstance(node.args[0], ast.Constant)
    }  # fmt: skip
    named: dict[str, list[str]] = {name: [] for name in sorted(names)}
    for path, tree in trees.items():
        if path.relative_to(root).parts[0] != "inspection":
            continue
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        for name in names & strings:
            named[name].append(str(path.relative_to(root)))
    return named


def any_per_thousand(trees: dict[Path, ast.AST], files: dict[Path, int]) -> float:
    """``Any`` in annotations and code of ``inspection/``, per 1,000 lines."""
    count = sum(
        isinstance(node, ast.Name) and node.id == "Any"
        for tree in trees.values()
        for node in ast.walk(tree)
    )
    return round(1000 * count / max(sum(files[p] for p in trees), 1), 1)


def measure(root: Path) -> dict:
    files = {p: lines(p) for t in TREES for p in sorted((root / t).rglob("*.py"))}
    packages: Counter[str] = Counter()
    for path, n in files.items():
        packages[package_of(root, path)] += n
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in files}
    package = {p: t for p, t in trees.items() if p.relative_to(root).parts[0] == "inspection"}
    local = [0, 0, 0]
    classes: list[tuple[str, int]] = []
    members: dict[str, list[str]] = {}
    for path in files:
        if path.relative_to(root).parts[0] != "inspection":
            continue
        source = path.read_text(encoding="utf-8")
        tree = trees[path]
        counts = function_local_imports(tree, source.splitlines())
        local = [a + b for a, b in zip(local, counts, strict=True)]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                classes.append((f"{path.relative_to(root)}:{node.name}", size))
                if node.name in CLASSES:
                    methods = [
                        n
                        for n in node.body
                        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    ]
                    members[node.name] = sorted({n.name for n in methods if n.name[0] != "_"})
    bench = [p for p in files if p.relative_to(root).parts[0] == "bench"]
    largest = sorted(files.items(), key=lambda kv: -kv[1])[:8]
    return {
        "total_lines": sum(files.values()),
        "lines_per_package": dict(sorted(packages.items())),
        "bench_files": len(bench),
        "bench_lines": sum(files[p] for p in bench),
        "function_local_imports": local[0],
        "function_local_project_imports": local[1],
        "function_local_imports_without_reason": local[2],
        "largest_files": [[str(p.relative_to(root)), n] for p, n in largest],
        "largest_classes": sorted(classes, key=lambda kv: -kv[1])[:6],
        "public_members": {k: (len(v), v) for k, v in sorted(members.items())},
        "longest_functions": longest_functions(root, trees),
        "link_files": link_files(root, trees),
        "any_per_1000_lines": any_per_thousand(package, files),
        "import_cycle": import_cycle(root, trees),
    }


def markdown(name: str, m: dict) -> str:
    out = [
        f"# Code structure: {name}",
        "",
        f"Lines of `{' '.join(TREES)}`: **{m['total_lines']}**",
        "",
    ]
    out += ["| package | lines |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in m["lines_per_package"].items()]
    out += ["", f"bench: {m['bench_files']} files, {m['bench_lines']} lines", ""]
    out += [
        f"function-local imports in inspection/: {m['function_local_imports']} "
        f"({m['function_local_project_imports']} of project modules, "
        f"{m['function_local_imports_without_reason']} without a reason comment)",
        "",
        "largest files: " + ", ".join(f"{p} {n}" for p, n in m["largest_files"]),
        "",
        "largest classes: " + ", ".join(f"{p} {n}" for p, n in m["largest_classes"]),
        "",
    ]
    out += [f"public members of {k}: {n}" for k, (n, _) in m["public_members"].items()]
    out += ["", "| package | longest function | lines |", "|---|---|---|"]
    out += [f"| {k} | `{f}` | {n} |" for k, (f, n) in m["longest_functions"].items()]
    out += ["", "| PLC link | files that name it |", "|---|---|"]
    out += [f"| {k} | {len(v)}: {', '.join(v)} |" for k, v in m["link_files"].items()]
    out += ["", f"`Any` per 1,000 lines of inspection/: {m['any_per_1000_lines']}"]
    out += [f"import cycle: {' -> '.join(m['import_cycle']) or 'none'}"]
    return "\n".join(out) + "\n"


def compare(before: dict, after: dict) -> str:
    """A before/after markdown table of the figures ``docs/architecture.md`` shows."""
    rows = [("lines (inspection, bench, apps, scripts)", "total_lines")]
    rows += [
        (f"lines: {k}", f"pkg:{k}")
        for k in sorted(set(before["lines_per_package"]) | set(after["lines_per_package"]))
    ]
    rows += [
        ("bench files", "bench_files"),
        ("bench lines", "bench_lines"),
        ("function-local imports (of project modules)", "function_local_imports"),
        (
            "function-local imports without a reason comment",
            "function_local_imports_without_reason",
        ),
        ("`Any` per 1,000 lines of inspection/", "any_per_1000_lines"),
        ("import cycle", "import_cycle"),
    ]

    def value(m: dict, key: str) -> str:
        if key.startswith("pkg:"):
            return str(m["lines_per_package"].get(key[4:], 0))
        if key == "function_local_imports":
            return f"{m[key]} ({m['function_local_project_imports']})"
        if key == "import_cycle" and key in m:
            return " → ".join(f"`{n}`" for n in m[key]) or "none"
        return str(m.get(key, "not counted"))

    out = ["| figure | before | after |", "|---|---|---|"]
    out += [f"| {label} | {value(before, key)} | {value(after, key)} |" for label, key in rows]
    for name in CLASSES:
        b, a = before["public_members"].get(name, [0]), after["public_members"].get(name, [0])
        out.append(f"| public members of `{name}` | {b[0]} | {a[0]} |")

    def top(m: dict, key: str) -> str:
        return ", ".join(f"`{'/'.join(p.split('/')[-2:])}` {n}" for p, n in m[key][:4])

    for label, key in (("largest files", "largest_files"), ("largest classes", "largest_classes")):
        out.append(f"| {label} | {top(before, key)} | {top(after, key)} |")

    def link(m: dict) -> str:
        counts = [len(files) for files in m.get("link_files", {}).values()]
        return f"{min(counts)}–{max(counts)}" if counts else "not counted"

    out.append(
        f"| files that name a PLC link (what a new link touches) | {link(before)} | {link(after)} |"
    )
    for package in sorted(
        set(before.get("longest_functions", {})) | set(after.get("longest_functions", {}))
    ):
        b, a = (m.get("longest_functions", {}).get(package, ["", 0]) for m in (before, after))
        out.append(
            f"| longest function: {package} | {b[1] or '-'} | {a[1]} `{a[0].split(':')[-1]}` |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--out", type=Path, default=Path("reports/structure"))
    parser.add_argument("--name", default="after")
    parser.add_argument("--compare", type=Path, help="an earlier run's JSON: print before/after")
    args = parser.parse_args()
    m = measure(args.root)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{args.name}.md").write_text(markdown(args.name, m), encoding="utf-8")
    print(markdown(args.name, m))
    if args.compare:
        print(compare(json.loads(args.compare.read_text(encoding="utf-8")), m))


if __name__ == "__main__":
    main()
