#!/usr/bin/env python3
"""Generate docs/TRACEABILITY.md: every seed requirement traced to code and to a passing test.

Reads three things and nothing else (Python 3 standard library only):

* the requirement ids and texts, `docs/traceability/requirements.md` (a copy of the shared
  REQUIREMENTS.md; checked against `../shared/REQUIREMENTS.md` when that file is there);
* tags in the repository's sources (see CONTRIBUTING.md, "Traceability"):
    `/// Verifies: V12, V13`   on a test function (`#[test]`, `#[tokio::test]`, inside `proptest!`)
    `// Implements: V12`       on the item that implements it (fn, struct, enum, impl, mod, ...);
                               `//! Implements:` for the enclosing module; `# Implements:` in
                               scripts and `<!-- Implements: -->` in docs (the next heading);
  and `docs/traceability/notes.toml`: departures from the seeds, hardware-only requirements
  (each with the documentation line that explains it) and one-line notes on what is missing;
* the output of the `cargo test --workspace` run that CI just did (`--log`): a requirement counts
  as verified only when a test naming it is reported `ok` in that log.

    scripts/traceability.py --log target/ci-test.log --write   # regenerate docs/TRACEABILITY.md
    scripts/traceability.py --log target/ci-test.log --check   # CI: differ from the committed one?
    scripts/traceability.py --tags                             # only validate the tags (no log)
    scripts/traceability.py --self-test                        # the script's own tests

Exit status: 0 fine, 1 the committed matrix differs (with a diff and the command that fixes
it), 2 a tag or a note is wrong (unknown id, a `Verifies:` tag not on a test, a stale anchor).
"""

# Implements: V56

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path("docs/traceability/requirements.md")
SHARED_REQUIREMENTS = Path("../shared/REQUIREMENTS.md")
NOTES = Path("docs/traceability/notes.toml")
MATRIX = Path("docs/TRACEABILITY.md")
REGENERATE = "scripts/traceability.py --log target/ci-test.log --write"

SEEDS = [
    ("S", "serial MFA shim", "seed 000"),
    ("V", "security architecture", "seed 002"),
    ("O", "PSK-TLS admin server", "seed 003"),
]

# The statuses, in the order the summary shows them.
VERIFIED = "verified"
IMPLEMENTED = "implemented"
DEPARTURE = "departure"
MISSING = "not implemented"
HARDWARE = "hardware"
STATUSES = [VERIFIED, IMPLEMENTED, DEPARTURE, MISSING, HARDWARE]
STATUS_TEXT = {
    VERIFIED: "verified by passing tests",
    IMPLEMENTED: "implemented, no passing test",
    DEPARTURE: "met by a documented departure from the seed",
    MISSING: "not implemented",
    HARDWARE: "hardware, documented only",
}

ID_RE = re.compile(r"^[SVO][1-9][0-9]*$")
TAG_RE = re.compile(
    r"^\s*(?:///?!?|#|<!--)\s*(Verifies|Implements):\s*(.*?)\s*(?:-->)?\s*$"
)


class TagError(Exception):
    """A tag, a note or the requirement list is wrong: the fix is in the sources."""


# --------------------------------------------------------------------------------------------
# Requirements and notes


@dataclass
class Requirement:
    id: str
    text: str


def load_requirements(root: Path) -> dict[str, Requirement]:
    text = (root / REQUIREMENTS).read_text(encoding="utf-8")
    reqs: dict[str, Requirement] = {}
    for line in text.splitlines():
        m = re.match(r"^([SVO][0-9]+) (.+)$", line)
        if m:
            if m.group(1) in reqs:
                raise TagError(f"{REQUIREMENTS}: {m.group(1)} is listed twice")
            reqs[m.group(1)] = Requirement(m.group(1), m.group(2).strip())
    if not reqs:
        raise TagError(f"{REQUIREMENTS}: no requirements found")
    return reqs


def check_requirements_copy(root: Path) -> list[str]:
    """The vendored copy must equal the shared list when the shared list is checked out beside."""
    shared = (root / SHARED_REQUIREMENTS).resolve()
    if not shared.is_file():
        return []
    if shared.read_bytes() != (root / REQUIREMENTS).read_bytes():
        raise TagError(
            f"{REQUIREMENTS} differs from {SHARED_REQUIREMENTS}: copy it over "
            f"(cp {SHARED_REQUIREMENTS} {REQUIREMENTS}) and retag what changed"
        )
    return []


def parse_toml_subset(text: str, name: str) -> dict[str, dict[str, str]]:
    """Tables of string values, the only TOML the notes file uses (tomllib needs Python 3.11)."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([A-Za-z0-9_-]+)\]$", line)
        if m:
            if m.group(1) in tables:
                raise TagError(f"{name}:{number}: [{m.group(1)}] appears twice")
            current = tables.setdefault(m.group(1), {})
            continue
        m = re.match(r'^([a-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$', line)
        if not m or current is None:
            raise TagError(f"{name}:{number}: expected [ID] or key = \"string\": {raw}")
        key, value = m.group(1), m.group(2)
        if key in current:
            raise TagError(f"{name}:{number}: {key} given twice")
        current[key] = re.sub(r'\\(["\\])', r"\1", value)
    return tables


@dataclass
class Note:
    status: str | None  # DEPARTURE, HARDWARE or None (a note only)
    why: str | None  # why it is not verified
    remark: str | None  # a caveat, shown whatever the status
    ref: str | None  # "path:line", the line that documents the departure / hardware item
    ref_text: str | None  # that line, as found (None when the file is not checked out)


def load_notes(root: Path, reqs: dict[str, Requirement]) -> tuple[dict[str, Note], list[str]]:
    warnings: list[str] = []
    tables = parse_toml_subset((root / NOTES).read_text(encoding="utf-8"), str(NOTES))
    notes: dict[str, Note] = {}
    for rid, table in tables.items():
        where = f"{NOTES} [{rid}]"
        if rid not in reqs:
            raise TagError(f"{where}: no requirement {rid} in {REQUIREMENTS}")
        unknown = set(table) - {"status", "why", "remark", "ref", "anchor"}
        if unknown:
            raise TagError(f"{where}: unknown keys {sorted(unknown)}")
        status = table.get("status")
        if status not in (None, DEPARTURE, HARDWARE):
            raise TagError(f'{where}: status must be "{DEPARTURE}" or "{HARDWARE}"')
        if status and not ("ref" in table and "anchor" in table and "why" in table):
            raise TagError(f"{where}: a {status} needs why, ref = \"FILE:LINE\" and anchor")
        if not status and not ("why" in table or "remark" in table):
            raise TagError(f"{where}: a note without a status needs why or remark")
        if "ref" in table and not status:
            raise TagError(f"{where}: ref is for a departure or a hardware item (give a status)")
        ref, ref_text = table.get("ref"), None
        if ref is not None:
            ref, ref_text, warning = check_ref(root, where, ref, table.get("anchor", ""))
            if warning:
                warnings.append(warning)
        notes[rid] = Note(status, table.get("why"), table.get("remark"), ref, ref_text)
    return notes, warnings


def check_ref(root: Path, where: str, ref: str, anchor: str) -> tuple[str, str | None, str | None]:
    """The documentation line a note points at: FILE[:LINE] and an anchor text that must be in
    the file. The line is where the anchor is (the given line when it is there, else its first
    occurrence), so editing the document above it does not break the check; a removed or
    reworded explanation does. Returns the resolved "FILE:LINE", the line's text and a warning."""
    m = re.match(r"^(.+?)(?::([0-9]+))?$", ref)
    if not m or not anchor:
        raise TagError(f'{where}: ref must be "FILE" or "FILE:LINE" and anchor non-empty')
    name, hint = m.group(1), int(m.group(2)) if m.group(2) else None
    path = root / name
    if not path.is_file():
        if name.startswith("../"):
            # The shared documents beside the checkout (DESIGN.md): checked where present.
            return ref, None, f"{where}: {name} is not checked out beside the repository; not checked"
        raise TagError(f"{where}: {name} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [i for i, text in enumerate(lines, 1) if anchor in text]
    if not found:
        raise TagError(f'{where}: "{anchor}" is nowhere in {name}')
    line = hint if hint in found else found[0]
    # The line's text goes into the matrix only for files in the repository: the matrix must not
    # depend on whether the shared documents are checked out beside it.
    text = None if name.startswith("../") else lines[line - 1].strip()
    return f"{name}:{line}", text, None


def parse_ids(text: str, where: str, reqs: dict[str, Requirement]) -> list[str]:
    ids = [part.strip() for part in text.split(",")]
    if not ids or any(not part for part in ids):
        raise TagError(f"{where}: expected a comma-separated list of requirement ids: {text!r}")
    for rid in ids:
        if not ID_RE.match(rid):
            raise TagError(f"{where}: {rid!r} is not a requirement id (S1, V12, O3, ...)")
        if rid not in reqs:
            raise TagError(f"{where}: {rid} does not exist in {REQUIREMENTS}")
    if len(set(ids)) != len(ids):
        raise TagError(f"{where}: an id is named twice")
    return ids


# --------------------------------------------------------------------------------------------
# Rust sources: items, module paths, test functions


@dataclass
class Item:
    kind: str  # fn, struct, enum, trait, impl, mod, const, static, type, macro
    name: str
    path: list[str]  # module path within the target, plus the impl type for methods
    line: int  # line of the item's keyword
    header_start: int  # first line after the previous `;`, `{` or `}`: attributes and docs
    header: str  # code of the header (attributes included), comments and strings removed
    in_proptest: bool


ITEM_RE = re.compile(
    r"^(?:pub(?:\s*\([^)]*\))?\s+)?(?:default\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?"
    r'(?:extern\s+(?:""\s+)?)?'
    r"(fn|struct|enum|trait|impl|mod|const|static|type|union|macro_rules!)\b\s*(.*)$",
    re.S,
)


def strip_attributes(header: str) -> str:
    """Removes `#[...]` and `#![...]` (brackets balanced) from the start of an item header."""
    out, i = [], 0
    while i < len(header):
        if header.startswith("#[", i) or header.startswith("#![", i):
            depth, j = 0, header.index("[", i)
            while j < len(header):
                depth += {"[": 1, "]": -1}.get(header[j], 0)
                j += 1
                if depth == 0:
                    break
            i = j
        else:
            out.append(header[i])
            i += 1
    return " ".join("".join(out).split())


def classify_header(header: str) -> tuple[str, str] | None:
    """(kind, name) when the header declares an item, e.g. ("fn", "derive")."""
    # A header can start with the tail of an attribute whose braces ended the previous header,
    # e.g. `})]` of `#![proptest_config(Config { .. })]`.
    m = ITEM_RE.match(strip_attributes(re.sub(r"^[\s)\]]+", "", header)))
    if not m:
        return None
    kind, rest = m.group(1), m.group(2)
    if kind == "macro_rules!":
        name = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)", rest)
        return ("macro", name.group(1)) if name else None
    if kind == "impl":
        rest = re.sub(r"^<.*?>\s*", "", rest) if rest.startswith("<") else rest
        rest = re.split(r"\bwhere\b", rest)[0].strip()
        target = rest.split(" for ")[-1].strip()
        target = re.sub(r"<.*", "", target).split("::")[-1].strip()
        return ("impl", target) if target else None
    name = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)", rest)
    if not name:
        return None
    return (kind, name.group(1))


def scan_rust(text: str) -> list[Item]:
    """Every item with its module path, found by following braces outside comments and strings."""
    items: list[Item] = []
    # Frames: ("mod", name) / ("impl", type) / ("fn", name) / ("proptest", "") / ("block", "")
    stack: list[tuple[str, str]] = []
    header: list[str] = []
    header_start = 1
    line = 1
    i, n = 0, len(text)

    def current_path() -> list[str]:
        return [name for kind, name in stack if kind in ("mod", "impl")]

    def in_proptest() -> bool:
        return any(kind == "proptest" for kind, _ in stack)

    def in_fn_body() -> bool:
        return any(kind == "fn" for kind, _ in stack)

    def declared() -> tuple[str, str] | None:
        """Records the item the current header declares, if any (not items inside fn bodies)."""
        head = "".join(header)
        found = classify_header(head)
        if not found or in_fn_body():
            return None
        kind, name = found
        keyword = {"impl": r"\bimpl\b", "macro": r"\bmacro_rules!\s*" + re.escape(name)}.get(
            kind, r"\b" + kind + r"\s+" + re.escape(name) + r"\b"
        )
        at = re.search(keyword, head)
        offset = head[: at.start()].count("\n") if at else 0
        items.append(
            Item(kind, name, current_path(), header_start + offset, header_start, head, in_proptest())
        )
        return found

    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "\n":
            line += 1
            header.append(c)
            i += 1
        elif c == "/" and nxt == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "/" and nxt == "*":
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        line += 1
                        header.append("\n")
                    i += 1
        elif c in "rb" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) and (
            m := re.match(r'(?:br|r|b)(#*)"', text[i : i + 70])
        ):
            hashes = m.group(1)
            raw = "r" in m.group(0)
            j = i + len(m.group(0))
            if raw:
                end = text.find('"' + hashes, j)
                end = n if end < 0 else end
                chunk, i = text[j:end], end + 1 + len(hashes)
            else:
                k = j
                while k < n and text[k] != '"':
                    k += 2 if text[k] == "\\" else 1
                chunk, i = text[j:k], k + 1
            line += chunk.count("\n")
            header.append('""' + "\n" * chunk.count("\n"))
        elif c == '"':
            k = i + 1
            while k < n and text[k] != '"':
                k += 2 if text[k] == "\\" else 1
            chunk = text[i + 1 : k]
            line += chunk.count("\n")
            header.append('""' + "\n" * chunk.count("\n"))
            i = k + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if nxt == "\\":
                k = text.find("'", i + 2 + (1 if text[i + 2 : i + 3] == "'" else 0))
                i = k + 1
                header.append("' '")
            elif i + 2 < n and text[i + 2] == "'":
                i += 3
                header.append("' '")
            else:
                header.append(c)
                i += 1
        elif c == "{":
            found = declared()
            head = strip_attributes("".join(header))
            if found and found[0] in ("mod", "impl", "fn"):
                stack.append(found)
            elif re.match(r"^(?:[A-Za-z_:]+::)?proptest!$", head.strip()):
                stack.append(("proptest", ""))
            else:
                stack.append(("block", ""))
            header, header_start = [], line
            i += 1
        elif c == "}":
            if stack:
                stack.pop()
            header, header_start = [], line
            i += 1
        elif c == ";":
            declared()
            header, header_start = [], line
            i += 1
        else:
            header.append(c)
            i += 1
    return items


# --------------------------------------------------------------------------------------------
# Tags in the repository


@dataclass
class Test:
    package: str  # e.g. warden-core
    binary: str  # "unit" (src/lib.rs or src/main.rs) or the integration test file, tests/x.rs
    name: str  # as libtest prints it: path::to::fn
    file: str  # repository-relative source file
    ids: list[str]
    ignored: bool


@dataclass
class Impl:
    file: str
    item: str  # e.g. "fn kdf::derive", "impl Identity", "mod audit"
    ids: list[str]


@dataclass
class Tags:
    tests: list[Test] = field(default_factory=list)
    impls: list[Impl] = field(default_factory=list)
    test_names: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # every test


TEST_ATTR_RE = re.compile(r"#\[\s*(?:tokio::)?test\b")


def module_path_of(file: Path, package_dir: Path) -> tuple[str, list[str]]:
    """(binary, module path) of a source file: unit tests or the integration test file."""
    rel = file.relative_to(package_dir)
    parts = list(rel.parts)
    if parts[0] == "tests":
        return "/".join(parts), []
    assert parts[0] == "src", rel
    parts = parts[1:]
    if parts[-1] in ("lib.rs", "main.rs") and len(parts) == 1:
        return "unit", []
    if parts[-1] == "mod.rs":
        parts = parts[:-1]
    else:
        parts[-1] = parts[-1][:-3]
    return "unit", parts


def packages(root: Path) -> dict[str, Path]:
    out = {}
    for manifest in sorted((root / "crates").glob("*/Cargo.toml")):
        m = re.search(r'^name\s*=\s*"([^"]+)"', manifest.read_text(encoding="utf-8"), re.M)
        if m:
            out[m.group(1)] = manifest.parent
    return out


def rust_sources(package_dir: Path) -> list[Path]:
    files = sorted((package_dir / "src").rglob("*.rs"))
    files += sorted((package_dir / "tests").glob("*.rs"))  # test binaries: tests/*.rs only
    return files


def collect_tags(root: Path, reqs: dict[str, Requirement]) -> Tags:
    tags = Tags()
    for package, package_dir in packages(root).items():
        for file in rust_sources(package_dir):
            collect_rust_file(root, package, package_dir, file, reqs, tags)
    for file in other_sources(root):
        collect_other_file(root, file, reqs, tags)
    return tags


def collect_rust_file(root, package, package_dir, file, reqs, tags: Tags) -> None:
    text = file.read_text(encoding="utf-8")
    rel = file.relative_to(root).as_posix()
    binary, module = module_path_of(file, package_dir)
    items = scan_rust(text)
    for item in items:
        if item.kind == "fn" and is_test(item):
            tags.test_names.setdefault((package, binary), set()).add(
                "::".join(module + item.path + [item.name])
            )
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        m = TAG_RE.match(line)
        if not m or not re.match(r"^\s*//", line):
            continue
        where = f"{rel}:{number}"
        kind, ids = m.group(1), parse_ids(m.group(2), where, reqs)
        inner = re.match(r"^\s*//!", line) is not None
        if inner:
            if kind == "Verifies":
                raise TagError(f"{where}: Verifies: belongs on a test function, not //!")
            owner = enclosing_module(items, number)
            name = "::".join(module + owner) or package.replace("-", "_")
            tags.impls.append(Impl(rel, f"mod {name}", ids))
            continue
        item = item_after(items, number)
        if item is None:
            raise TagError(f"{where}: {kind}: is not directly above an item")
        if kind == "Verifies":
            if item.kind != "fn" or not is_test(item):
                raise TagError(
                    f"{where}: Verifies: must be on a test function "
                    f"(#[test], #[tokio::test] or in proptest!), not on {item.kind} {item.name}"
                )
            tags.tests.append(
                Test(package, binary, "::".join(module + item.path + [item.name]), rel, ids,
                     bool(re.search(r"#\[\s*ignore\b", item.header)))
            )
        else:
            qualified = "::".join(module + item.path + [item.name])
            tags.impls.append(Impl(rel, f"{item.kind} {qualified}", ids))


def is_test(item: Item) -> bool:
    return bool(TEST_ATTR_RE.search(item.header)) or (
        item.in_proptest and "#[test]" in item.header.replace(" ", "")
    )


def item_after(items: list[Item], line: int) -> Item | None:
    """The item whose header (attributes, doc comments) holds the tag on `line`."""
    best = None
    for item in items:
        if item.header_start <= line < item.line:
            if best is None or item.line < best.line:
                best = item
    return best


def enclosing_module(items: list[Item], line: int) -> list[str]:
    """For `//!` tags: the inline module the line is in ([] at file level)."""
    owners = [it for it in items if it.kind == "mod" and it.line < line]
    # An inner doc comment at the top of an inline module sits right after its `{`.
    for it in sorted(owners, key=lambda it: -it.line):
        if it.line == line - 1:
            return it.path + [it.name]
    return []


OTHER_ROOTS = ["docs", "scripts", ".ci", "tests/python", "deny.toml", "Cargo.toml", "fuzz/fuzz_targets"]
OTHER_SUFFIXES = {".md", ".py", ".sh", ".toml", "", ".rs"}


def other_sources(root: Path) -> list[Path]:
    out: list[Path] = []
    for entry in OTHER_ROOTS:
        path = root / entry
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in OTHER_SUFFIXES]
    generated = root / MATRIX
    return [p for p in out if p != generated and "traceability" not in p.parts[-2:-1]]


def collect_other_file(root: Path, file: Path, reqs, tags: Tags) -> None:
    rel = file.relative_to(root).as_posix()
    if rel == "scripts/traceability.py":
        lines = file.read_text(encoding="utf-8").splitlines()
        lines = lines[: next(i for i, text in enumerate(lines) if text.startswith("import"))]
    else:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            return
    for number, line in enumerate(lines, 1):
        m = TAG_RE.match(line)
        if not m:
            continue
        where = f"{rel}:{number}"
        if m.group(1) == "Verifies":
            raise TagError(f"{where}: Verifies: tags belong on Rust tests (tag the test that runs this)")
        ids = parse_ids(m.group(2), where, reqs)
        if file.suffix == ".md":
            heading = next(
                (text.lstrip("#").strip() for text in lines[number:] if text.startswith("#")), None
            )
            if heading is None:
                raise TagError(f"{where}: Implements: in a document needs a heading after it")
            tags.impls.append(Impl(rel, f"§ {heading}", ids))
        else:
            item = describe_script_item(lines, number)
            tags.impls.append(Impl(rel, item, ids))


def describe_script_item(lines: list[str], number: int) -> str:
    """The shell step / Python def after a `# Implements:` line, or the whole file at its top."""
    if all(not text.strip() or text.lstrip().startswith("#") for text in lines[: number - 1]):
        return "(whole file)"
    for text in lines[number:]:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = re.match(r"^(?:def|class)\s+([A-Za-z_][A-Za-z0-9_]*)", stripped)
        if m:
            return f"def {m.group(1)}" if stripped.startswith("def") else f"class {m.group(1)}"
        m = re.match(r'^echo\s+"==\s*(.+?)"', stripped)
        if m:
            return f"step: {m.group(1)}"
        if re.match(r"^(from|import)\b", stripped):
            return "(whole file)"
        return "`" + (stripped if len(stripped) <= 60 else stripped[:57] + "...") + "`"
    return "(whole file)"


# --------------------------------------------------------------------------------------------
# The test run


@dataclass
class Run:
    results: dict[tuple[str, str, str], str]  # (package, binary, test name) -> ok/FAILED/ignored
    binaries: set[tuple[str, str]]


RUNNING_RE = re.compile(r"^\s*Running (unittests )?(\S+) \((.+)\)\s*$")
RESULT_RE = re.compile(r"^test (\S+)(?: - should panic)? \.\.\. (ok|FAILED|ignored)\b")


def parse_log(text: str, packages_by_lib: dict[str, str]) -> Run:
    """Results per (package, binary, test) from `cargo test --workspace` output.

    Unit test binaries are named after their crate (`deps/warden_core-HASH`); integration test
    binaries only after their file (`tests/fuzz_smoke.rs`, in several packages), and cargo runs
    each package's unit tests before its integration tests, so those belong to the package seen
    last. `generate` cross-checks the result against the tests the sources declare.
    """
    results: dict[tuple[str, str, str], str] = {}
    binaries: set[tuple[str, str]] = set()
    package = binary = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = RUNNING_RE.match(line)
        if m:
            stem = Path(m.group(3)).name.rsplit("-", 1)[0]
            if m.group(1):
                package = packages_by_lib.get(stem)
                binary = "unit" if package else None
            else:
                binary = m.group(2) if package else None
            if package and binary:
                binaries.add((package, binary))
            continue
        if line.lstrip().startswith("Doc-tests "):
            package = binary = None
            continue
        m = RESULT_RE.match(line)
        if m and package and binary:
            results[(package, binary, m.group(1))] = m.group(2)
    return Run(results, binaries)


def libs_of(root: Path) -> dict[str, str]:
    """Binary stem -> package: warden_core -> warden-core, and bin names (warden -> warden)."""
    out = {}
    for package, directory in packages(root).items():
        out[package.replace("-", "_")] = package
        manifest = (directory / "Cargo.toml").read_text(encoding="utf-8")
        for m in re.finditer(r'\[\[bin\]\][^\[]*?name\s*=\s*"([^"]+)"', manifest):
            out[m.group(1)] = package
        if (directory / "src/main.rs").is_file():
            out[package] = package
    return out


# --------------------------------------------------------------------------------------------
# The matrix


@dataclass
class Row:
    req: Requirement
    status: str
    why: str | None
    impls: list[Impl]
    tests: list[tuple[Test, str]]  # (test, outcome: passed / FAILED / ignored / not run)
    note: Note | None


OUTCOME = {"ok": "passed", "FAILED": "FAILED", "ignored": "ignored"}


def build_rows(reqs, notes, tags: Tags, run: Run) -> tuple[list[Row], list[str]]:
    warnings: list[str] = []
    impls: dict[str, list[Impl]] = {rid: [] for rid in reqs}
    tests: dict[str, list[tuple[Test, str]]] = {rid: [] for rid in reqs}
    for impl in tags.impls:
        for rid in impl.ids:
            impls[rid].append(impl)
    for test in tags.tests:
        outcome = OUTCOME.get(run.results.get((test.package, test.binary, test.name), ""), "not run")
        if outcome == "not run" and (test.package, test.binary) in run.binaries:
            warnings.append(
                f"{test.file}: {test.name} is tagged but {test.package} {test.binary} did not report it"
            )
        for rid in test.ids:
            tests[rid].append((test, outcome))
    rows = []
    for rid, req in reqs.items():
        note = notes.get(rid)
        passed = [t for t, outcome in tests[rid] if outcome == "passed"]
        failed = [t for t, outcome in tests[rid] if outcome == "FAILED"]
        if note and note.status:
            status = note.status
        elif passed and not failed:
            status = VERIFIED
        elif impls[rid] or tests[rid]:
            status = IMPLEMENTED
        else:
            status = MISSING
        why = note.why if note else None
        if status == IMPLEMENTED and not why:
            why = automatic_why(tests[rid])
        if status == MISSING and not why:
            why = "nothing in the code or the tests names it"
        if status == VERIFIED and note and note.why:
            warnings.append(f"{NOTES} [{rid}]: verified now; its why is not shown: delete it")
        impls[rid].sort(key=lambda i: (i.file, i.item))
        tests[rid].sort(key=lambda t: (t[0].file, t[0].name))
        rows.append(Row(req, status, why, impls[rid], tests[rid], note))
    return rows, warnings


def automatic_why(tests: list[tuple[Test, str]]) -> str:
    if not tests:
        return "no test names it"
    outcomes = sorted({outcome for _, outcome in tests})
    return "its tests did not pass in this run (" + ", ".join(outcomes) + ")"


def sort_key(rid: str) -> tuple[int, int]:
    return ("SVO".index(rid[0]), int(rid[1:]))


def render(rows: list[Row]) -> str:
    out: list[str] = []
    w = out.append
    w("# Traceability matrix")
    w("")
    w("<!-- Generated by scripts/traceability.py from the code, docs/traceability/ and the test run")
    w("     of CI. Do not edit: regenerate with `" + REGENERATE + "`. -->")
    w("")
    w("Every requirement of the three seeds (numbered in `docs/traceability/requirements.md`, a copy")
    w("of the shared REQUIREMENTS.md), with the code that implements it and the tests that verify it.")
    w("A requirement is **verified** only when a test naming it (`/// Verifies:`) ran and passed in the")
    w("`cargo test --workspace` run this file was generated from; code is found by its")
    w("`// Implements:` tags; departures from the seeds and hardware-only items are in")
    w("`docs/traceability/notes.toml`, each with the documentation line that explains it (checked).")
    w("How to tag and regenerate: `CONTRIBUTING.md`, \"Traceability\".")
    w("")
    w("## Summary")
    w("")
    w("| seed | " + " | ".join(STATUS_TEXT[s] for s in STATUSES) + " | total |")
    w("|---|" + "---:|" * (len(STATUSES) + 1))
    totals = {s: 0 for s in STATUSES}
    for prefix, title, seed in SEEDS:
        seed_rows = [r for r in rows if r.req.id[0] == prefix]
        counts = {s: sum(1 for r in seed_rows if r.status == s) for s in STATUSES}
        for s in STATUSES:
            totals[s] += counts[s]
        w(f"| {prefix} — {title} ({seed}) | " + " | ".join(str(counts[s]) for s in STATUSES)
          + f" | {len(seed_rows)} |")
    w("| **all** | " + " | ".join(f"**{totals[s]}**" for s in STATUSES) + f" | **{len(rows)}** |")
    w("")
    w("## Not yet verified")
    w("")
    w("What the next work is planned from: every requirement without a passing test, by status,")
    w("with one line on why.")
    for status in [IMPLEMENTED, MISSING, DEPARTURE, HARDWARE]:
        pending = [r for r in rows if r.status == status]
        if not pending:
            continue
        w("")
        w(f"### {STATUS_TEXT[status][0].upper() + STATUS_TEXT[status][1:]} ({len(pending)})")
        w("")
        for r in pending:
            extra = ""
            if status in (DEPARTURE, HARDWARE):
                extra = f" (`{r.note.ref}`"
                passing = sum(1 for _, outcome in r.tests if outcome == "passed")
                if passing:
                    extra += f"; {passing} passing {'test' if passing == 1 else 'tests'} of what warden does"
                extra += ")"
            w(f"- **{r.req.id}** {r.req.text} — {r.why}{extra}")
    for prefix, title, seed in SEEDS:
        w("")
        w(f"## {prefix} — {title} ({seed})")
        for r in [r for r in rows if r.req.id[0] == prefix]:
            w("")
            w(f"### {r.req.id} {r.req.text}")
            w("")
            w(f"- status: **{STATUS_TEXT[r.status]}**")
            if r.note and r.note.ref:
                w(f"- documented: `{r.note.ref}`" + (f" — {r.note.ref_text}" if r.note.ref_text else ""))
            if r.why and r.status != VERIFIED:
                w(f"- why: {r.why}")
            if r.note and r.note.remark:
                w(f"- remark: {r.note.remark}")
            if r.impls:
                w("- code:")
                for impl in r.impls:
                    w(f"  - `{impl.file}` — `{impl.item}`")
            else:
                w("- code: none tagged")
            if r.tests:
                w("- tests:")
                for test, outcome in r.tests:
                    w(f"  - `{test.file}` — `{test.name}`: {outcome}")
            else:
                w("- tests: none")
    w("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Command line


def generate(root: Path, log: Path | None) -> tuple[str, list[str]]:
    reqs = load_requirements(root)
    warnings = check_requirements_copy(root)
    notes, note_warnings = load_notes(root, reqs)
    warnings += note_warnings
    tags = collect_tags(root, reqs)
    check_unique_tests(tags)
    text = log.read_text(encoding="utf-8", errors="replace") if log else ""
    run = parse_log(text, libs_of(root))
    if log and not run.binaries:
        raise TagError(f"{log}: no test binaries found; is it the output of cargo test --workspace?")
    declared = {(p, b, n) for (p, b), names in tags.test_names.items() for n in names}
    unknown = sorted(set(run.results) - declared)
    if unknown:
        # A test the log reports but no source declares: the mapping from log to source is off.
        raise TagError(f"{log}: {len(unknown)} tests in the log are not in the sources, e.g. "
                       f"{unknown[0]}; was the log made from this checkout?")
    rows, row_warnings = build_rows(reqs, notes, tags, run)
    return render(rows), warnings + row_warnings


def check_unique_tests(tags: Tags) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for test in tags.tests:
        key = (test.package, test.binary, test.name)
        if key in seen:
            raise TagError(f"{test.file}: test {test.name} is tagged twice (also {seen[key]})")
        seen[key] = test.file


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, help="output of cargo test --workspace (target/ci-test.log)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"write {MATRIX}")
    mode.add_argument("--check", action="store_true", help=f"fail when {MATRIX} differs")
    mode.add_argument("--tags", action="store_true", help="only validate tags and notes")
    mode.add_argument("--list-tests", action="store_true", help="print every tagged test")
    mode.add_argument("--self-test", action="store_true", help="run the script's own tests")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test()
    os.chdir(ROOT)
    if (args.write or args.check) and not args.log:
        parser.error("--write and --check need --log (the cargo test output)")
    try:
        if args.tags or args.list_tests:
            reqs = load_requirements(ROOT)
            check_requirements_copy(ROOT)
            load_notes(ROOT, reqs)
            tags = collect_tags(ROOT, reqs)
            check_unique_tests(tags)
            if args.list_tests:
                for t in sorted(tags.tests, key=lambda t: (t.package, t.binary, t.name)):
                    print(f"{t.package}\t{t.binary}\t{t.name}\t{','.join(t.ids)}")
            else:
                print(f"tags ok: {len(tags.tests)} tagged tests, {len(tags.impls)} tagged items")
            return 0
        text, warnings = generate(ROOT, args.log)
    except TagError as e:
        print(f"traceability: error: {e}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"traceability: warning: {warning}", file=sys.stderr)
    target = ROOT / MATRIX
    if args.write:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {MATRIX}")
        return 0
    committed = target.read_text(encoding="utf-8") if target.is_file() else ""
    if committed == text:
        print(f"{MATRIX} is up to date")
        return 0
    diff = difflib.unified_diff(
        committed.splitlines(keepends=True), text.splitlines(keepends=True),
        f"{MATRIX} (committed)", f"{MATRIX} (this run)",
    )
    sys.stdout.writelines(diff)
    print(
        f"\ntraceability: {MATRIX} differs from what this test run produced (above: - committed,"
        f" + this run).\nIf the change is right, regenerate and commit it:\n    {REGENERATE}",
        file=sys.stderr,
    )
    return 1


# --------------------------------------------------------------------------------------------
# Self-test


def self_test() -> int:
    import tempfile
    import unittest

    class ScannerTests(unittest.TestCase):
        def test_module_paths_and_tests(self):
            src = (
                'const S: &str = "{ not a brace";\n'
                "/// Implements: V1\n"
                "pub struct Key([u8; 32]);\n"
                "impl<T: Clone> Trait for Wrapper<T> {\n"
                "    // Implements: V2\n"
                "    fn method(&self) -> impl Iterator<Item = u8> { let c = '{'; todo!() }\n"
                "}\n"
                "#[cfg(test)]\n"
                "mod tests {\n"
                "    /// Verifies: V1\n"
                "    #[test]\n"
                '    #[ignore = "slow { brace"]\n'
                "    fn one() { let r = r#\"}\"#; }\n"
                "    proptest! {\n"
                "        #![proptest_config(ProptestConfig { cases: 3, ..Default::default() })]\n"
                "        /// Verifies: V2\n"
                "        #[test]\n"
                "        fn prop(x in 0..3u8) { let _ = x; }\n"
                "    }\n"
                "}\n"
            )
            items = scan_rust(src)
            by_name = {it.name: it for it in items}
            self.assertEqual(by_name["Key"].line, 3)
            self.assertEqual(by_name["method"].path, ["Wrapper"])
            self.assertEqual(by_name["one"].path, ["tests"])
            self.assertTrue(is_test(by_name["one"]))
            self.assertTrue(is_test(by_name["prop"]))
            self.assertFalse(is_test(by_name["method"]))
            self.assertIs(item_after(items, 2), by_name["Key"])
            self.assertIs(item_after(items, 10), by_name["one"])
            self.assertIs(item_after(items, 16), by_name["prop"])
            self.assertEqual(by_name["prop"].path, ["tests"])

        def test_log_attribution(self):
            log = (
                "     Running unittests src/main.rs (target/debug/deps/warden-1)\n"
                "test cmd::tests::a ... ok\n"
                "     Running tests/fuzz_smoke.rs (target/debug/deps/fuzz_smoke-2)\n"
                "     Running unittests src/lib.rs (target/debug/deps/warden_core-3)\n"
                "test kdf::tests::b ... FAILED\n"
                "     Running tests/fuzz_smoke.rs (target/debug/deps/fuzz_smoke-4)\n"
                "test c ... ignored, slow\n"
                "   Doc-tests warden_core\n"
                "test crates/warden-core/src/lib.rs - x (line 3) ... ok\n"
            )
            run = parse_log(log, {"warden": "warden", "warden_core": "warden-core"})
            self.assertEqual(
                run.results,
                {
                    ("warden", "unit", "cmd::tests::a"): "ok",
                    ("warden-core", "unit", "kdf::tests::b"): "FAILED",
                    ("warden-core", "tests/fuzz_smoke.rs", "c"): "ignored",
                },
            )

        def test_ids_are_checked(self):
            reqs = {"V1": Requirement("V1", "x")}
            self.assertEqual(parse_ids("V1", "f", reqs), ["V1"])
            for bad in ("V2", "V1,", "v1", "V1, V1", "X3"):
                with self.assertRaises(TagError):
                    parse_ids(bad, "f", reqs)

        def test_notes_and_refs(self):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                (root / "docs").mkdir()
                (root / "docs/a.md").write_text("one\nthe seed asked for 51\n")
                reqs = {"O44": Requirement("O44", "x")}
                got = check_ref(root, "w", "docs/a.md:2", "asked for 51")
                self.assertEqual(got, ("docs/a.md:2", "the seed asked for 51", None))
                # Moved (or no line given): found where it is now.
                self.assertEqual(check_ref(root, "w", "docs/a.md:1", "asked for 51")[0], "docs/a.md:2")
                self.assertEqual(check_ref(root, "w", "docs/a.md", "asked for 51")[0], "docs/a.md:2")
                # Removed or reworded: an error.
                with self.assertRaisesRegex(TagError, "nowhere"):
                    check_ref(root, "w", "docs/a.md:2", "asked for 52")
                self.assertEqual(
                    parse_toml_subset('[O44]\nstatus = "departure" # c\nwhy = "a \\"b\\""\n', "n"),
                    {"O44": {"status": "departure", "why": 'a "b"'}},
                )
                del reqs

    class StatusTests(unittest.TestCase):
        def test_only_a_passing_test_verifies(self):
            reqs = {rid: Requirement(rid, "x") for rid in ("S1", "S2", "S3", "S4", "S5")}
            tags = Tags()
            tags.impls.append(Impl("a.rs", "fn a", ["S1", "S2", "S3", "S4"]))
            for name, ids in (("ok", ["S1"]), ("bad", ["S2"]), ("off", ["S3"]), ("mix", ["S1"])):
                tags.tests.append(Test("p", "unit", name, "a.rs", ids, False))
            run = Run({("p", "unit", "ok"): "ok", ("p", "unit", "bad"): "FAILED",
                       ("p", "unit", "off"): "ignored", ("p", "unit", "mix"): "ok"},
                      {("p", "unit")})
            rows, _ = build_rows(reqs, {}, tags, run)
            status = {r.req.id: r.status for r in rows}
            self.assertEqual(status, {"S1": VERIFIED, "S2": IMPLEMENTED, "S3": IMPLEMENTED,
                                      "S4": IMPLEMENTED, "S5": MISSING})
            # One failing test among passing ones: not verified.
            run.results[("p", "unit", "mix")] = "FAILED"
            rows, _ = build_rows(reqs, {}, tags, run)
            self.assertEqual(rows[0].status, IMPLEMENTED)
            self.assertIn("FAILED", rows[0].why)

        def test_the_matrix_has_no_run_dependent_text(self):
            reqs = {"S1": Requirement("S1", "x")}
            tags = Tags()
            tags.tests.append(Test("p", "unit", "t", "a.rs", ["S1"], False))
            run = Run({("p", "unit", "t"): "ok"}, {("p", "unit")})
            one = render(build_rows(reqs, {}, tags, run)[0])
            two = render(build_rows(reqs, {}, tags, run)[0])
            self.assertEqual(one, two)
            self.assertNotRegex(one, r"[0-9]+\.[0-9]+s|20[0-9]{2}-[0-9]{2}-[0-9]{2}")

    suite = unittest.TestSuite()
    for case in (ScannerTests, StatusTests):
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
