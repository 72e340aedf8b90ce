"""The Debian mirror this machine's own apt uses, for the lab's debootstrap.

Read at run time from the same files apt reads: /etc/apt/sources.list
(one-line format), /etc/apt/sources.list.d/*.list (the same) and
/etc/apt/sources.list.d/*.sources (deb822), so that no mirror is named in
the project and the lab builds from whatever this machine is allowed to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_one_line(text: str) -> list[Source]:
    """`deb [options] URI SUITE COMPONENT...` lines; deb-src and comments skipped."""
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            # Options may hold spaces: they end at the first word ending in "]".
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            sources.append(Source(words[0], (words[1],), tuple(words[2:])))
    return sources


def parse_deb822(text: str) -> list[Source]:
    """Stanzas of `Types: deb`; `Enabled: no` ones skipped."""
    sources = []
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
            continue
        for uri in stanza.get("uris", "").split():
            sources.append(Source(uri, tuple(stanza.get("suites", "").split()), tuple(stanza.get("components", "").split())))
    return sources


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas, current, key = [], {}, None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += " " + line.strip()  # a continuation line
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    return stanzas


def machine_sources(root: Path = Path("/")) -> list[Source]:
    """Every `deb` source of the machine, in the order apt reads them."""
    sources = []
    main_list = root / "etc/apt/sources.list"
    if main_list.is_file():
        sources += parse_one_line(main_list.read_text())
    parts = root / "etc/apt/sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += parse_one_line(path.read_text())
            elif path.suffix == ".sources":
                sources += parse_deb822(path.read_text())
    return sources


def debian_mirror(suite: str, sources: list[Source], releases: tuple[str, ...]) -> str | None:
    """The URI to debootstrap suite from: one that serves suite's main
    component, else one that serves another of the Debian releases
    (a mirror serves them all); never a security, updates or backports
    pocket's, nor a third-party repository's."""
    for wanted in (suite, *releases):
        for source in sources:
            if wanted in source.suites and "main" in source.components:
                return source.uri
    return None
