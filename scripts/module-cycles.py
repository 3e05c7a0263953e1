#!/usr/bin/env python3
"""Finds cycles between the modules of each crate of the workspace.

A module depends on another when its code (tests excluded: everything from the first `#[cfg(test)]`
on) names it through `crate::a::b`, `super::x` or `self::x` paths. Each crate's module tree is read
from its files (`src/lib.rs` or `src/main.rs`, `mod.rs` and `name.rs` modules). A dependency on a
module's own descendant or ancestor is not a cycle (a parent re-exporting its children is layering).
Prints every cycle (as strongly connected components) and exits 1 when there is one.

    scripts/module-cycles.py            every crate under crates/ and services/
    scripts/module-cycles.py --list     also print each module's dependencies
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH_RE = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_files(src: Path):
    """Maps module path tuples to their files."""
    roots = [p for p in (src / "lib.rs", src / "main.rs") if p.exists()]
    modules = {}
    for root in roots[:1]:
        modules[()] = root
        stack = [((), root)]
        while stack:
            path, file = stack.pop()
            text = strip_tests(file.read_text())
            base = file.parent if file.name in ("mod.rs", "lib.rs", "main.rs") else file.with_suffix("")
            for name in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;", text, re.M):
                for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
                    if candidate.exists():
                        child = path + (name,)
                        modules[child] = candidate
                        stack.append((child, candidate))
                        break
    return modules


def strip_tests(text: str) -> str:
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def resolve(modules, here, anchor, segments):
    """The longest known module named by `anchor::segments` from module `here`."""
    if anchor == "crate":
        base = ()
    elif anchor == "super":
        base = here[:-1]
    else:
        base = here
    parts = list(segments)
    # `super::super::x`
    while parts and parts[0] == "super":
        base = base[:-1]
        parts.pop(0)
    best = None
    for n in range(len(parts), -1, -1):
        candidate = base + tuple(parts[:n])
        if candidate in modules:
            best = candidate
            break
    return best


def dependencies(modules):
    deps = {m: set() for m in modules}
    for here, file in modules.items():
        text = strip_tests(file.read_text())
        text = re.sub(r"//[^\n]*", "", text)
        found = []
        for anchor, prefix, group in USE_GROUP_RE.findall(text):
            for item in re.split(r",", group):
                item = item.strip().split(" as ")[0].strip()
                if not item or item == "self":
                    found.append((anchor, prefix.split("::")[1:]))
                elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*$", item):
                    found.append((anchor, prefix.split("::")[1:] + item.split("::")))
        for anchor, rest in PATH_RE.findall(text):
            found.append((anchor, rest.split("::")[1:]))
        for anchor, segments in found:
            target = resolve(modules, here, anchor, segments)
            if target is None or target == here:
                continue
            # A module and its own descendants or ancestors are one unit here.
            if target[: len(here)] == here or here[: len(target)] == target:
                continue
            deps[here].add(target)
    return deps


def cycles(deps):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(("crate",) + m)


def main():
    listing = "--list" in sys.argv
    found = 0
    for manifest in sorted(ROOT.glob("crates/*/Cargo.toml")) + sorted(ROOT.glob("services/*/Cargo.toml")):
        crate = manifest.parent
        src = crate / "src"
        if not src.exists():
            continue
        modules = module_files(src)
        deps = dependencies(modules)
        if listing:
            for m in sorted(deps):
                print(f"{crate.relative_to(ROOT)} {name(m)} -> {', '.join(name(d) for d in sorted(deps[m]))}")
        for component in cycles(deps):
            found += 1
            print(f"cycle in {crate.relative_to(ROOT)}: " + " <-> ".join(name(m) for m in component))
    if found:
        print(f"{found} module cycle(s)")
        return 1
    print("no module cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
