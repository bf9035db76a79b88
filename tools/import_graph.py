#!/usr/bin/env python
"""The import graph of the package, in notebook order, and its back-edges.

Every module of `sail_vl_nb` is generated from one notebook (its first line names it); notebook order is the order a
reader meets the course, and should be the order the data flows. A *back-edge* is a module that imports — at the top
or inside a function — a module whose notebook comes later. This script lists, for every module, its notebook, line
count and the package modules it imports, then the back-edges and the modules over the line budget.

    python tools/import_graph.py            # the listing; exit status 1 if there is a back-edge
    python tools/import_graph.py --max-lines 400
"""
import argparse, ast, re, sys
from pathlib import Path

PKG = "sail_vl_nb"
# Known back-edges, each with its reason; the check fails on any other.
ALLOWED = {}
ROOT = Path(__file__).resolve().parent.parent


def modules(pkg_dir: Path) -> dict:
    "module name -> (path, notebook) for every generated module of the package."
    out = {}
    for p in sorted(pkg_dir.rglob("*.py")):
        if p.name == "_modidx.py": continue
        rel = p.relative_to(pkg_dir.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        m = re.search(r"File to edit: (?:\.\./)+nbs/(\S+?)\.ipynb", p.read_text(encoding="utf-8"))
        out[name] = (p, m.group(1) if m else None)
    return out


def imports(path: Path, name: str, known: set) -> set:
    "Package modules imported anywhere in `path` (relative imports resolved against `name`)."
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                parent = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(parent + ([mod] if mod else []))
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else: continue
        for t in targets:
            while t and t not in known: t = t.rpartition(".")[0]
            if t and t != name: found.add(t)
    return found


def order_key(nb: str | None):
    "Sort notebooks as a reader meets them: 06_curation < 06a_... < 06d_... < 06da_... < 06e_... < 07_data; unknown last."
    if nb is None: return (-1, "")          # the package root: no notebook, imports nothing of ours
    m = re.match(r"(\d+)([a-z]*)_", nb)           # 06d < 06da < 06e: letters compare as strings
    return (int(m.group(1)), m.group(2)) if m else (999, nb)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-lines", type=int, default=400)
    a = ap.parse_args(argv)
    mods = modules(ROOT / PKG)
    known = set(mods)
    rows, back = [], []
    for name, (path, nb) in sorted(mods.items(), key=lambda kv: (order_key(kv[1][1]), kv[0])):
        deps = imports(path, name, known)
        # a package's __init__ re-exports its own submodules: not an edge in the data path
        deps = {d for d in deps if not d.startswith(name + ".")}
        n = len(path.read_text(encoding="utf-8").splitlines())
        rows.append((name, nb, n, sorted(deps)))
        for d in deps:
            dnb = mods[d][1]
            if order_key(dnb) > order_key(nb): back.append((name, nb, d, dnb))
    allowed = [b for b in back if (b[0], b[2]) in ALLOWED]
    back = [b for b in back if (b[0], b[2]) not in ALLOWED]
    w = max(len(r[0]) for r in rows)
    print(f"{'module':<{w}}  {'notebook':<24} {'lines':>5}  imports")
    for name, nb, n, deps in rows:
        print(f"{name:<{w}}  {nb or '-':<24} {n:>5}  {', '.join(d.removeprefix(PKG + '.') for d in deps) or '-'}")
    big = [(r[0], r[2]) for r in rows if r[2] > a.max_lines]
    print(f"\nmodules over {a.max_lines} lines: " + (", ".join(f"{m} ({n})" for m, n in big) if big else "none"))
    print("back-edges (a module importing one from a later notebook): " + ("none" if not back else ""))
    for name, nb, d, dnb in back: print(f"  {name} ({nb}) -> {d} ({dnb})")
    for name, nb, d, dnb in allowed: print(f"known back-edge: {name} ({nb}) -> {d} ({dnb}): {ALLOWED[(name, d)]}")
    return 1 if back else 0


if __name__ == "__main__":
    sys.exit(main())
