#!/usr/bin/env python3
"""Lists the import edges between the files of a crate and the cycles among them.

Usage: scripts/import_cycles.py [SRC_DIR ...]   (default: raftstore/src)

An edge a -> b means that file a names an item of file b through a `crate::`, `super::` or
`self::` path, or through a path that starts with the name of one of its own child modules (in a
`use` or inline), outside comments and outside the `#[cfg(test)]` module at the end of a file. Not
edges: a `mod x;` declaration (a module holding its children is not an import), and a parent's
`pub use child::Item` re-export (a facade: the parent's code does not depend on it, its users do;
a parent that names a child's item in its own code, re-exported or not, has an edge). Prints every edge, then every cycle (as strongly connected components of more than one
file); exits with 1 when there is a cycle.
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")


CHILD = re.compile(r"(?<![:\w])([a-z_][a-z0-9_]*)::")


def child_files(src, file):
    """The files of the child modules of `file` (only a lib.rs or mod.rs has any)."""
    if os.path.basename(file) not in ("lib.rs", "mod.rs"):
        return []
    d = os.path.dirname(file)
    out = []
    for f in sorted(os.listdir(d)):
        full = os.path.join(d, f)
        if f.endswith(".rs") and f not in ("lib.rs", "mod.rs", "main.rs"):
            out.append(full)
        elif os.path.isfile(os.path.join(full, "mod.rs")):
            out.append(os.path.join(full, "mod.rs"))
    return out


def module_path(src, file):
    """The module path of `file` inside `src`, as a list of names."""
    rel = os.path.relpath(file, src)[: -len(".rs")].split(os.sep)
    if rel[-1] in ("lib", "main"):
        rel = rel[:-1]
    elif rel[-1] == "mod":
        rel = rel[:-1]
    return rel


def file_of(src, mods):
    """The file that holds the longest prefix of module path `mods`."""
    for n in range(len(mods), -1, -1):
        base = os.path.join(src, *mods[:n]) if n else src
        for cand in (base + ".rs", os.path.join(base, "mod.rs")):
            if n and os.path.isfile(cand):
                return cand
        if n == 0:
            return os.path.join(src, "lib.rs")
    return None


def code_lines(file):
    """The file's lines of code, without comments and without its test module."""
    out = []
    with open(file) as f:
        for line in f:
            if line.strip().startswith("#[cfg(test)]"):
                break
            line = re.sub(r"//.*", "", line)
            out.append(line)
    return "".join(out)


def grouped(text, start):
    """The names inside the braces opening at `start` (first level only)."""
    depth, names, cur = 0, [], ""
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                names.append(cur)
                break
        if depth == 1 and ch == ",":
            names.append(cur)
            cur = ""
        elif depth >= 1:
            cur += ch
    return [re.split(r"::|\s|\{", n.strip())[0] for n in names if n.strip()]


def edges_of(src, file):
    here = module_path(src, file)
    text = code_lines(file)
    targets = set()
    children = {
        os.path.basename(f)[: -len(".rs")] if not f.endswith("mod.rs") else os.path.basename(os.path.dirname(f))
        for f in child_files(src, file)
    }
    facade = re.sub(r"pub use [^;]*;", "", text)
    for m in CHILD.finditer(facade):
        if m.group(1) in children:
            target = file_of(src, here + [m.group(1)])
            if target:
                targets.add(target)
    # Items a parent re-exports from a child and then uses by name in its own code.
    for m in re.finditer(r"pub use ([a-z_][a-z0-9_]*)::(\{[^}]*\}|\w+)\s*;", text):
        if m.group(1) not in children:
            continue
        names = re.findall(r"\w+", m.group(2))
        if any(re.search(r"\b%s\b" % n, facade) for n in names):
            target = file_of(src, here + [m.group(1)])
            if target:
                targets.add(target)
    for m in PATH.finditer(text):
        root, rest = m.group(1), m.group(2)
        base = {"crate": [], "super": here[:-1], "self": here}[root]
        if rest == "::{":
            heads = [[h] for h in grouped(text, m.end() - 1)]
        else:
            heads = [rest.strip(":").split("::")]
        for segs in heads:
            target = file_of(src, base + segs)
            if target and os.path.abspath(target) != os.path.abspath(file):
                targets.add(target)
    return targets


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    srcs = sys.argv[1:] or ["raftstore/src"]
    found = False
    for src in srcs:
        files = sorted(
            os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".rs")
        )
        graph = {f: edges_of(src, f) for f in files}
        rel = lambda f: os.path.relpath(f, src)
        print(f"# {src}: import edges (file -> files it names)")
        for f in files:
            if graph[f]:
                print(f"{rel(f)} -> {', '.join(sorted(rel(t) for t in graph[f]))}")
        cyc = cycles(graph)
        if cyc:
            found = True
            print(f"# {src}: {len(cyc)} cycle(s)")
            for c in cyc:
                print("cycle: " + " <-> ".join(rel(f) for f in c))
        else:
            print(f"# {src}: no cycles")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
