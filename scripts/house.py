#!/usr/bin/env python3
"""The house rules, checked on the source text (run by scripts/test.sh before the tests).

1. Layers: main -> server -> api -> services -> store; a file never names a layer above it.
2. No cycles: the graph of file imports (`use` trees and `crate::…` paths in code) has no cycle.
3. Areas meet at their doors: a file of one service area names another area only through that
   area's root module (`services::<area>::Type`, its face `s.<area>()`), never through the
   other area's inner files — except the ports listed in PORTS.
4. Migrations only add (docs/high-availability.md, rolling upgrades): during a roll, nodes of
   the old release run on the schema the first new node migrated, so no migration drops or
   renames a table or a column or changes a column's type. (A contraction ships a release
   after the code stopped using what it removes, in a file named `*_contract.sql`.)

`--report` prints the graph's figures (imports, cycles, cross-area edges) instead of failing;
`--root DIR` checks another tree (tests/house.rs gives it trees that break each rule).
"""
import os, re, sys, collections

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
if '--root' in sys.argv:
    ROOT = sys.argv[sys.argv.index('--root') + 1]
SRC = os.path.join(ROOT, 'src')
LAYER = {'main': 5, 'server': 4, 'api': 3, 'services': 2, 'store': 1,
         'config': 0, 'error': 0, 'util': 0, 'tls': 0, 'metrics': 0, 'lib': 6}
# Inner modules of an area that other areas may name: plain data and pure rules, no calls
# back into the services. Everything else of an area is reached through its root
# (`services::<area>::X`, re-exported there) or its face (`s.<area>().method()`).
PUBLISHED = {
    'services/rooms/pdu', 'services/rooms/state', 'services/rooms/requests',
    'services/rooms/version', 'services/rooms/client_event',
    'services/federation/pdu', 'services/federation/edus',
    'services/policy/access_rules', 'services/policy/email', 'services/policy/room_defaults',
    'services/policy/annuaire/index',
}
# An area that reaches federation through one file only: {area: that file}.
PORTS = {'rooms': 'services/rooms/federation_port'}

def modules():
    mods = {}
    for d, _, fs in os.walk(SRC):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.relpath(os.path.join(d, f), SRC)[:-3].split(os.sep)
            if p[-1] in ('mod', 'lib', 'main') and len(p) > 1 or p == ['lib']:
                p = p[:-1]
            mods[tuple(p)] = os.path.join(d, f)
    return mods

def strip(text):
    """Drops comments, string literals and `#[cfg(test)]` modules (tests may reach anywhere)."""
    text = re.sub(r'//[^\n]*', '', text)
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    m = re.search(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{', text)
    if m:
        text = text[:m.start()]
    return text

TOK = re.compile(r'\s+|[A-Za-z_][A-Za-z0-9_]*|::|.', re.S)

MODS = set()

def use_paths(text, here):
    """Absolute paths (tuples) named by the file: use trees and crate::/super:: paths."""
    out = []
    for m in re.finditer(r'\buse\s+', text):
        j, toks = m.end(), []
        while j < len(text):
            t = TOK.match(text, j)
            j = t.end()
            s = t.group(0)
            if s.isspace():
                continue
            toks.append(s)
            if s == ';':
                break
        stack, prefix, k = [], [], 0
        while k < len(toks):
            s = toks[k]
            if s == '{':
                stack.append(prefix)
            elif s == ',':
                if prefix: out.append(tuple(prefix))
                prefix = list(stack[-1]) if stack else []
            elif s == '}':
                if prefix: out.append(tuple(prefix))
                prefix = stack.pop() if stack else []
                prefix = []  # the group is done
                if stack: prefix = list(stack[-1])
            elif s == ';':
                if prefix: out.append(tuple(prefix))
            elif s == 'as':
                k += 1
            elif s in ('::', '*'):
                pass
            else:
                prefix = resolve(prefix, s, here)
            k += 1
    for m in re.finditer(r'(?<![A-Za-z0-9_:])((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)', text):
        if text[max(0, m.start() - 4):m.start()].strip().endswith('use'):
            continue
        prefix = []
        for seg in m.group(1).split('::'):
            prefix = resolve(prefix, seg, here)
        out.append(tuple(prefix))
    # code paths through a child module (`store_events::Placement::Live`)
    for m in re.finditer(r'(?<![A-Za-z0-9_:])([a-z_][a-z0-9_]*)::[A-Za-z_]', text):
        if tuple(here) + (m.group(1),) in MODS:
            out.append(('crate',) + tuple(here) + (m.group(1),))
    return out

def resolve(prefix, seg, here):
    if not prefix:
        if seg == 'crate': return ['crate']
        if seg == 'super': return ['crate'] + list(here[:-1])
        if seg == 'self': return ['crate'] + list(here)
        if tuple(here) + (seg,) in MODS: return ['crate'] + list(here) + [seg]
        return [seg]
    if seg == 'super': return prefix[:-1]
    if seg == 'self': return prefix
    return prefix + [seg]

REEXPORTS = {}  # (module, name) -> the absolute path it re-exports

def target(path, mods):
    """The file a path lands in, following `pub use` re-exports to the file that defines it."""
    if not path or path[0] != 'crate':
        return None
    p = list(path[1:])
    for _ in range(8):
        k = len(p)
        while k and tuple(p[:k]) not in mods:
            k -= 1
        if k == 0:
            return None
        mod = tuple(p[:k])
        if k < len(p) and (mod, p[k]) in REEXPORTS:
            p = list(REEXPORTS[(mod, p[k])][1:]) + p[k + 1:]
            continue
        return mod
    return mod

def area(mod):
    if len(mod) >= 2 and mod[0] == 'services' and os.path.isdir(os.path.join(SRC, 'services', mod[1])):
        return mod[1]
    return None

def graph():
    mods = modules()
    MODS.update(mods)
    for mod, f in mods.items():
        text = strip(open(f).read())
        pub = ' '.join(re.findall(r'\bpub(?:\([^)]*\))?\s+(use\s+[^;]+;)', text))
        for p in use_paths(pub, mod):
            if len(p) > 1 and p[-1] != '*':
                REEXPORTS[(mod, p[-1])] = p
    edges = collections.defaultdict(set)
    written = collections.defaultdict(set)
    faces = collections.defaultdict(set)
    for mod, f in mods.items():
        text = strip(open(f).read())
        for p in use_paths(text, mod):
            t = target(p, mods)
            if t is not None and t != mod:
                edges[mod].add(t)
            w = written_target(p, mods)
            if w is not None and w != mod:
                written[mod].add(w)
        for m in re.finditer(r'\.([a-z0-9_]+)\(\)\s*\.\s*[a-z_]', text):
            faces[mod].add(m.group(1))
    return mods, edges, written, faces

def written_target(path, mods):
    """The module a path names as written (no re-export followed)."""
    if not path or path[0] != 'crate':
        return None
    p = path[1:]
    while p and tuple(p) not in mods:
        p = p[:-1]
    return tuple(p) if p else None

def sccs(nodes, edges):
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in nodes:
        if v not in index: visit(v)
    return out

def name(m):
    return '/'.join(m) or 'lib'

def main():
    report = '--report' in sys.argv
    mods, edges, written, faces = graph()
    problems = []
    # parents naming their own descendants (mod declarations, re-exports) are structure, and
    # descendants naming an ancestor are the normal direction: count neither in cycles
    dag = edges if "--strict" in sys.argv else {a: {b for b in bs if b[:len(a)] != a} for a, bs in edges.items()}
    for a, bs in edges.items():
        for b in bs:
            la, lb = LAYER.get(a[0] if a else 'lib', 0), LAYER.get(b[0], 0)
            if a and lb > la and a[0] != b[0]:
                problems.append(f'upward import: {name(a)} names {name(b)}')
    for a, bs in written.items():
        for b in bs:
            aa, ab = area(a), area(b)
            if aa and ab and aa != ab and len(b) > 2 and name(b) not in PUBLISHED:
                problems.append(f'cross-area private path: {name(a)} names {name(b)} '
                                f'(go through services::{ab}, its face or a published module)')
    for a in mods:
        if area(a) in PORTS and name(a) not in PORTS.values():
            (via, port) = [(k, v) for k, v in PORTS.items() if k == area(a)][0]
            for other in ('federation',):
                if other in faces.get(a, ()) or any(area(b) == other for b in written.get(a, ())):
                    problems.append(f'{name(a)} reaches {other} outside its port {port}')
    mig_root = os.path.join(ROOT, 'migrations')
    for d in ('sqlite', 'postgres'):
        folder = os.path.join(mig_root, d)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if not f.endswith('.sql') or f.endswith('_contract.sql'):
                continue
            sql = '\n'.join(l for l in open(os.path.join(folder, f)).read().splitlines()
                            if not l.strip().startswith('--'))
            if re.search(r'\bDROP\s+(TABLE|COLUMN)\b|\bRENAME\b|\bALTER\s+COLUMN\b[^;]*\bTYPE\b',
                         sql, re.I):
                problems.append(f'migration {d}/{f} drops, renames or retypes: old nodes of a '
                                f'rolling upgrade would break (see rule 4)')
    cycles = sccs(list(mods), dag)
    for c in cycles:
        problems.append('import cycle: ' + ' <-> '.join(name(m) for m in c))
    if report:
        print(f'{len(mods)} files, {sum(len(v) for v in dag.values())} imports, {len(cycles)} cycles')
        for c in cycles:
            print(f'  cycle of {len(c)}: ' + ', '.join(name(m) for m in c))
        ups = [p for p in problems if p.startswith('upward')]
        cross = [p for p in problems if p.startswith('cross')]
        rest = [p for p in problems if p not in ups and p not in cross and 'cycle' not in p]
        print(f'{len(ups)} upward imports, {len(cross)} cross-area private paths, {len(rest)} port breaches')
        for p in ups + cross + rest:
            print('  ' + p)
        return 0
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f'house rules: {len(problems)} problem(s) (see scripts/house.py)', file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__':
    sys.exit(main())
