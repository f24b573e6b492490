#!/usr/bin/env python3
"""The code's shape, checked: no function longer than 60 lines outside tests, and no import cycle between the
modules of a crate. Run from the repository root: `python3 scripts/check-shape.py` (CI runs it); exits 1 and
names each offender.

Functions: every `fn` of src/, crates/*/src, crates/*/examples, benches/ and fuzz/, by brace matching, with
`#[cfg(test)]` items and tests/ folders left out; a nested function counts towards the function around it.
Cycles: for each crate (a lib.rs or main.rs and the modules it declares), an edge from module A to module B
when A names B through `crate::` or `super::` (outside tests), between the two modules' ancestors that are
siblings; a module and its own parent or child are not a cycle.
"""
import os
import re
import sys

MAX_LINES = 60
FN = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+(\w+)')


def code(line):
    """A line without its comment and string contents (enough for brace counting)."""
    line = re.sub(r'//.*', '', line)
    line = re.sub(r"'(\\.|[^'\\])'", "' '", line)
    return re.sub(r'"(\\.|[^"\\])*"', '""', line)


def item_end(lines, i):
    """The last line of the item starting at line i (braces balanced, or a `;` before any brace)."""
    depth, started, j = 0, False, i
    while j < len(lines):
        t = code(lines[j])
        depth += t.count('{') - t.count('}')
        started = started or '{' in t
        if (started and depth <= 0) or (not started and t.rstrip().endswith(';')):
            return j
        j += 1
    return j


def without_tests(lines):
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip().startswith('#[cfg(test)]'):
            i = item_end(lines, i + 1) + 1
            continue
        out.append(lines[i])
        i += 1
    return out


def rust_files(roots):
    for root in roots:
        for dp, _, files in os.walk(root):
            if '/tests' in dp or 'target' in dp or '/corpus' in dp:
                continue
            yield from (os.path.join(dp, f) for f in sorted(files) if f.endswith('.rs'))


def long_functions(roots):
    out = []
    for path in rust_files(roots):
        lines = without_tests(open(path, encoding='utf-8').read().split('\n'))
        i = 0
        while i < len(lines):
            m = FN.match(lines[i])
            if m:
                end = item_end(lines, i)
                if end - i + 1 > MAX_LINES:
                    out.append(f'{path}: fn {m.group(7)} is {end - i + 1} lines')
                i = end + 1 if end - i + 1 > MAX_LINES else i + 1
                continue
            i += 1
    return out


def modules(root_file):
    """module path (tuple) -> file, from a crate root."""
    mods = {}

    def visit(path, file):
        mods[path] = file
        text = open(file, encoding='utf-8').read()
        d, base = os.path.dirname(file), os.path.basename(file)
        sub = d if base in ('lib.rs', 'main.rs', 'mod.rs') else os.path.join(d, base[:-3])
        for m in re.finditer(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', text, re.M):
            for cand in (os.path.join(sub, m.group(1) + '.rs'), os.path.join(sub, m.group(1), 'mod.rs')):
                if os.path.exists(cand):
                    visit(path + (m.group(1),), cand)
                    break

    visit((), root_file)
    return mods


def references(path, text, mods):
    text = re.sub(r'//.*', '', '\n'.join(without_tests(text.split('\n'))))
    named = {tuple(m.group(1).split('::')) for m in re.finditer(r'\bcrate::((?:\w+::)*\w+)', text)}
    for m in re.finditer(r'\b((?:super::)+)((?:\w+::)*\w+)', text):
        up = m.group(1).count('super::')
        named.add(path[:max(0, len(path) - up)] + tuple(m.group(2).split('::')))
    out = set()
    for r in named:
        k = next((k for k in range(len(r), 0, -1) if r[:k] in mods), 0)
        out.add(r[:k])
    return out


def cycles(root_file):
    mods = modules(root_file)
    edges = {}
    for path, file in mods.items():
        for r in references(path, open(file, encoding='utf-8').read(), mods):
            k = 0
            while k < min(len(path), len(r)) and path[k] == r[k]:
                k += 1
            if k < len(path) and k < len(r):
                edges.setdefault(path[:k + 1], set()).add(r[:k + 1])
    index, low, stack, on, found, n = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
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
                found.append(' <-> '.join('::'.join(c) for c in sorted(comp)))

    for v in list(mods):
        if v not in index:
            strong(v)
    return [f'{root_file}: import cycle {c}' for c in found]


def main():
    crates = sorted(d for d in os.listdir('crates') if os.path.isdir(os.path.join('crates', d)))
    roots = ['src', 'benches', 'fuzz/src', 'fuzz/fuzz_targets']
    roots += [os.path.join('crates', c, sub) for c in crates for sub in ('src', 'examples')]
    crate_roots = ['src/lib.rs', 'src/main.rs', 'fuzz/src/lib.rs']
    crate_roots += [os.path.join(dp, 'main.rs') for dp, _, fs in os.walk('src/bin') if 'main.rs' in fs]
    crate_roots += [f for c in crates for f in (os.path.join('crates', c, 'src', 'lib.rs'),)]
    problems = long_functions([r for r in roots if os.path.isdir(r)])
    for root in crate_roots:
        if os.path.exists(root):
            problems += cycles(root)
    for p in problems:
        print(p)
    print(f'check-shape: {len(problems)} problems (functions over {MAX_LINES} lines, import cycles)')
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
