"""The lab's debootstrap mirror, read from the machine's apt sources in both
of apt's formats."""

from tests.lab.aptsources import Source, debian_mirror, machine_sources, parse_deb822, parse_one_line

RELEASES = ("bookworm", "trixie")

ONE_LINE = """\
# deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://one.example/debian bookworm main contrib
deb-src http://one.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main  # the pocket
deb [ arch=amd64 ] http://other.example/debian trixie main
"""

DEB822 = """\
Types: deb
# a comment inside a stanza
URIs: http://thirdparty.example/repo
Suites: nodistro
Components: main

Types: deb deb-src
URIs: http://a.example/debian
 http://b.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://off.example/debian
Suites: trixie
Components: main
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: trixie
Components: main
"""


def test_one_line_format():
    assert parse_one_line(ONE_LINE) == [
        Source("http://one.example/debian", ("bookworm",), ("main", "contrib")),
        Source("http://security.example/debian-security", ("bookworm-security",), ("main",)),
        Source("http://other.example/debian", ("trixie",), ("main",)),
    ]


def test_deb822_format():
    assert parse_deb822(DEB822) == [
        Source("http://thirdparty.example/repo", ("nodistro",), ("main",)),
        Source("http://a.example/debian", ("bookworm", "bookworm-updates"), ("main",)),
        Source("http://b.example/debian", ("bookworm", "bookworm-updates"), ("main",)),
    ]


def test_the_mirror_serves_the_suite_else_another_debian_release():
    sources = parse_deb822(DEB822)
    assert debian_mirror("bookworm", sources, RELEASES) == "http://a.example/debian"
    # No source for trixie (the disabled one does not count): the bookworm mirror serves it too,
    # never the third-party repository listed first.
    assert debian_mirror("trixie", sources, RELEASES) == "http://a.example/debian"
    assert debian_mirror("trixie", parse_one_line(ONE_LINE), RELEASES) == "http://other.example/debian"
    assert debian_mirror("bookworm", [Source("http://security.example/x", ("bookworm-security",), ("main",))],
                         RELEASES) is None


def test_the_files_apt_reads_in_its_order(tmp_path):
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("deb http://first.example/debian bookworm main\n")
    (tmp_path / "etc/apt/sources.list.d/b.sources").write_text(DEB822)
    (tmp_path / "etc/apt/sources.list.d/a.list").write_text("deb http://second.example/debian trixie main\n")
    (tmp_path / "etc/apt/sources.list.d/c.list.disabled").write_text("deb http://never.example/debian bookworm main\n")
    uris = [source.uri for source in machine_sources(tmp_path)]
    assert uris == ["http://first.example/debian", "http://second.example/debian", "http://thirdparty.example/repo",
                    "http://a.example/debian", "http://b.example/debian"]
