"""The tree's import directions, read from the source (no module is imported).

``imports_of(path)`` lists what one module imports (``ast`` for .py, the
import lines of a Cython .pyx), resolved to absolute dotted names, and
``attribute_uses`` what it reads off an imported module; each rule below is a
loop over ``modules()``.  Rules held here:

* a compiled hot path (``mailaccess/_speedups``) is a leaf: it imports nothing
  from the layers that sit on the store (server, views, query, ...);
* sans-IO packages (proto, vocab, sasl, mime) import no Trio, sockets, LMDB,
  store or server code; store/ imports no protocol and no event loop;
  protocol modules (proto/P, server/P*, views/P_*) never import another
  protocol's;
* only ``mailaccess/store`` builds LMDB keys or knows record layouts: no
  module outside it imports ``store.keys`` (but for the named exceptions),
  packs binary layouts with ``struct`` (outside store/ and mime/), or reaches
  for a private name of ``store`` or ``mime``.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import mailaccess

PKG = Path(mailaccess.__file__).parent
ROOT = "mailaccess"


@dataclass(frozen=True)
class Import:
    module: str               # the importing module, dotted
    target: str               # the module imported from, absolute and dotted
    names: tuple[str, ...]    # "from TARGET import a, b" -> ("a", "b"); "import X" -> ()
    aliases: tuple[str, ...]  # local names bound (for attribute_uses)
    line: int

    def targets(self) -> list[str]:
        """TARGET, and TARGET.name for each name (a name may be a submodule)."""
        return [self.target] + [f"{self.target}.{n}" for n in self.names]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(under: str = "") -> list[tuple[str, Path]]:
    """(dotted name, path) of every .py and .pyx module below mailaccess/UNDER."""
    base = PKG / under if under else PKG
    return sorted((module_name(p), p) for p in list(base.rglob("*.py")) + list(base.rglob("*.pyx"))
                  if "__pycache__" not in p.parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if not level:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


_PYX_IMPORT = re.compile(r"^(?:from\s+(\.*)([\w.]*)\s+import\s+(.+)|import\s+([\w., ]+))$")


def _pyx_imports(path: Path, module: str) -> list[Import]:
    """Import statements of a Cython module (not Python syntax: no ast)."""
    out = []
    text = path.read_text()
    # join parenthesised and backslash-continued import lines
    text = re.sub(r"\(\s*([^)]*?)\s*\)", lambda m: m.group(1).replace("\n", " "), text)
    text = text.replace("\\\n", " ")
    is_pkg = path.name == "__init__.py"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if "cimport" in line:
            continue
        m = _PYX_IMPORT.match(line)
        if not m:
            continue
        if m.group(4):
            for part in m.group(4).split(","):
                name, _, alias = part.strip().partition(" as ")
                out.append(Import(module, name.strip(), (), (alias.strip() or name.strip(),), n))
        else:
            target = _resolve(module, is_pkg, len(m.group(1)), m.group(2) or None)
            names, aliases = [], []
            for part in m.group(3).split(","):
                name, _, alias = part.strip().partition(" as ")
                names.append(name.strip())
                aliases.append(alias.strip() or name.strip())
            out.append(Import(module, target, tuple(names), tuple(aliases), n))
    return out


def imports_of(path: Path) -> list[Import]:
    """Every import statement of the module at PATH (nested ones included)."""
    module = module_name(path)
    if path.suffix == ".pyx":
        return _pyx_imports(path, module)
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append(Import(module, a.name, (), (a.asname or a.name.split(".")[0],),
                                  node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_pkg, node.level, node.module)
            out.append(Import(module, target, tuple(a.name for a in node.names),
                              tuple(a.asname or a.name for a in node.names), node.lineno))
    return out


def attribute_uses(path: Path, alias: str) -> set[str]:
    """Attributes read off the name ALIAS in the module at PATH (``alias.x``)."""
    text = path.read_text()
    if path.suffix == ".pyx":
        return set(re.findall(r"(?<![\w.])%s\.(\w+)" % re.escape(alias), text))
    return {n.attr for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == alias}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# --- the helper itself ------------------------------------------------------------------------

def test_helper_resolves_relative_and_cython_imports():
    imps = imports_of(PKG / "_speedups" / "fetchfmt_py.py")
    assert any("mailaccess.store.records" in i.targets() for i in imps)
    imps = imports_of(PKG / "_speedups" / "fetchfmt_c.pyx")
    assert any("mailaccess.store.records" in i.targets() for i in imps)
    assert not any(i.target.startswith("cpython") for i in imps)   # cimports are C
    assert _resolve("mailaccess.server.imap_session", False, 2, "store") == "mailaccess.store"
    assert _resolve("mailaccess.store", True, 1, "keys") == "mailaccess.store.keys"
    assert any(m == "mailaccess._speedups.fetchfmt_c" for m, _ in modules("_speedups"))


# --- rules --------------------------------------------------------------------------------------

# the layers that sit on the store: a compiled hot path imports none of them
ABOVE_STORE = ("mailaccess.server", "mailaccess.views", "mailaccess.query", "mailaccess.storeio",
               "mailaccess.accounts", "mailaccess.ingest", "mailaccess.importer",
               "mailaccess.exporter", "mailaccess.cli", "mailaccess.check", "mailaccess.bus")


def test_speedups_import_nothing_above_the_store():
    bad = [f"{path.name}:{i.line} imports {t}"
           for _m, path in modules("_speedups") for i in imports_of(path)
           for t in i.targets() if any(_within(t, up) for up in ABOVE_STORE)]
    assert bad == [], "a compiled hot path is a leaf: " + "; ".join(bad)


# modules outside store/ that may import store.keys, and which of its names
KEYS_OK = {
    # the store's own consistency checker reads every table raw
    "mailaccess.check": None,
    # a content hash (the blob id), not a key
    "mailaccess.ingest": {"blob_hash"},
}


def _keys_imports():
    for mod, path in modules():
        if _within(mod, "mailaccess.store"):
            continue
        for i in imports_of(path):
            if i.target == "mailaccess.store.keys":
                yield mod, path, i, set(i.names) or None, None
            elif "mailaccess.store.keys" in i.targets():
                alias = i.aliases[i.names.index("keys")]
                yield mod, path, i, attribute_uses(path, alias), alias


def test_only_the_store_builds_keys():
    """No module outside store/ imports store.keys (the named exceptions use
    only what they are allowed): keys come from the store's accessors."""
    bad = []
    for mod, path, imp, used, _alias in _keys_imports():
        if mod not in KEYS_OK:
            bad.append(f"{mod}:{imp.line} imports store.keys")
        elif KEYS_OK[mod] is not None and not (used or set()) <= KEYS_OK[mod]:
            bad.append(f"{mod}:{imp.line} uses store.keys.{sorted(used - KEYS_OK[mod])}")
    assert bad == [], "; ".join(bad)


# modules outside store/ and mime/ that may use struct, with the reason
STRUCT_OK: dict[str, str] = {}


def test_no_binary_layouts_outside_the_store():
    """struct packs record and key layouts; only store/ (records, keys) and
    mime/ (the index framing) use it.  A module with an unrelated binary
    format goes into STRUCT_OK with its reason."""
    bad = [f"{mod}:{i.line}" for mod, path in modules()
           if not (_within(mod, "mailaccess.store") or _within(mod, "mailaccess.mime"))
           and mod not in STRUCT_OK
           for i in imports_of(path) if "struct" in i.targets() or i.target == "_struct"]
    assert bad == [], "struct outside store/ and mime/: " + ", ".join(bad)


def test_no_private_layouts_outside_their_package():
    """Nothing outside store/ (mime/) imports or reads a private name of a
    store (mime) module, e.g. records._MSG_HEAD or index._HEAD: the public
    layout descriptions (EMAIL_LAYOUT, INDEX_LAYOUT) are the way in."""
    bad = []
    for mod, path in modules():
        for i in imports_of(path):
            for owner in ("mailaccess.store", "mailaccess.mime"):
                if _within(mod, owner):
                    continue
                if _within(i.target, owner):
                    bad += [f"{mod}:{i.line} imports {i.target}.{n}" for n in i.names
                            if n.startswith("_")]
                    # a module imported by name: what is read off it
                    for n, alias in zip(i.names, i.aliases):
                        if _within(f"{i.target}.{n}", owner) and (PKG.parent / (
                                f"{i.target}.{n}".replace(".", "/") + ".py")).exists():
                            bad += [f"{mod} reads {i.target}.{n}.{a}"
                                    for a in attribute_uses(path, alias)
                                    if a.startswith("_") and not a.startswith("__")]
    assert bad == [], "; ".join(bad)


# --- sans-IO layers and protocol separation -------------------------------------------------------

# sans-IO: bytes/values in, values/bytes out; no event loop, no sockets, no
# server glue, no store (the vocabulary and the wire never touch mail)
SANS_IO = ("mailaccess.proto", "mailaccess.vocab", "mailaccess.sasl", "mailaccess.mime")
IO_AND_GLUE = ("trio", "socket", "ssl", "lmdb", "mailaccess.server", "mailaccess.storeio",
               "mailaccess.bus", "mailaccess.views", "mailaccess.store", "mailaccess.accounts")


def _bad_imports(packages, forbidden):
    return [f"{mod}:{i.line} imports {t}"
            for mod, path in modules() if any(_within(mod, p) for p in packages)
            for i in imports_of(path) for t in i.targets()
            if any(_within(t, f) for f in forbidden)]


def test_sans_io_packages_import_no_io_and_no_server():
    bad = _bad_imports(SANS_IO, IO_AND_GLUE)
    assert bad == [], "sans-IO layers stay sans-IO: " + "; ".join(bad)


def test_the_store_imports_no_protocol_and_no_event_loop():
    """store/ is protocol-neutral and Trio-free (storeio.py is the Trio side)."""
    bad = _bad_imports(("mailaccess.store",), ("trio", "mailaccess.proto", "mailaccess.server",
                                               "mailaccess.views", "mailaccess.query",
                                               "mailaccess.bus", "mailaccess.storeio"))
    assert bad == [], "; ".join(bad)


def _protocol_modules() -> dict[str, list[str]]:
    """protocol name -> its modules: proto/NAME/*, server/NAME*.py, views/NAME_*.py."""
    out: dict[str, list[str]] = {}
    for proto_dir in sorted(p for p in (PKG / "proto").iterdir() if p.is_dir()
                            and p.name != "__pycache__"):
        name = proto_dir.name
        mods = [m for m, _ in modules() if _within(m, f"mailaccess.proto.{name}")
                or re.fullmatch(rf"mailaccess\.server\.{name}(_\w+)?", m)
                or re.fullmatch(rf"mailaccess\.views\.{name}(_\w+)?", m)]
        out[name] = mods
    return out


def test_protocols_never_import_each_other():
    """All sharing between IMAP, LMTP (and JMAP, ActiveSync) goes through the
    store, the bus and the neutral modules (vocab, ids, sasl, query)."""
    protos = _protocol_modules()
    assert {"imap", "lmtp"} <= set(protos) and "mailaccess.server.imap_session" in protos["imap"]
    owner = {m: p for p, mods in protos.items() for m in mods}
    bad = []
    for mod, path in modules():
        mine = owner.get(mod)
        if mine is None:
            continue
        for i in imports_of(path):
            for t in i.targets():
                other = owner.get(t) or next((p for p in protos if p != mine and any(
                    _within(t, m) for m in protos[p])), None)
                if other is not None and other != mine:
                    bad.append(f"{mod}:{i.line} ({mine}) imports {t} ({other})")
    assert bad == [], "; ".join(sorted(set(bad)))
