"""Tests for the built-in English-German corpus (vaswani_hf.data.default_corpus), on tiny fake packages: no apt."""

import json
import os
import shutil
import stat

import pytest
from conftest import CORPUS_PACKAGE_VERSIONS, help_docs_in, help_page, write_corpus_packages, write_help_pages
from datasets import DatasetDict

from vaswani_hf.data import default_corpus
from vaswani_hf.data.default_corpus import (
    build_default_corpus,
    default_corpus_record,
    fetch_packages,
    load_default_corpus,
    parse_ding,
    parse_help_page,
    parse_help_tree,
)


def test_parse_help_page_text():
    units = parse_help_page(
        help_page(
            "en",
            """
<h1 id="hd_id1"><a name="x"></a>Opening <a href="y.html">Documents</a></h1>
<p id="par_id1" class="paragraph">Choose <span class="menuitem">File - Open</span> &amp; click the
    icon <img src="a.svg" alt="Icon Open">.</p>
<p id="par_id2">Press <span id="sw1" class="switchinline"><span hidden="true" id="MACsw1" class="MAC">Command
</span><span hidden="true" id="defaultsw1">Ctrl</span></span>+S.</p>
<p id="par_id3">Select <span id="sw2" class="switchinline"><span hidden="true" id="WRITERsw2" class="WRITER">the
text</span><span hidden="true" id="CALCsw2" class="CALC">the cell</span></span>, then copy.</p>
<ul><li><p id="par_id4" class="listitem">A list item</p></li></ul>
<table><tr><td id="td1">Cell<br>text &lt;b&gt;</td></tr></table>
<span id="sw3" class="switch"><span hidden="true" id="WINsw3" class="WIN">
  <p id="par_id5">Windows only.</p></span></span>
<p id="par_code" class="code">x = 1</p>
<p id="par_id6">Embedded</p><div class="embedded"><p id="par_id6">Embedded again</p></div>
<p>No id.</p><p id="par_empty"><img src="b.svg" alt="only an image"></p>
""",
        )
    )
    assert units == {
        "hd_id1": "Opening Documents",
        "par_id1": "Choose File - Open & click the icon.",
        "par_id2": "Press Ctrl+S.",
        "par_id3": "Select the text, then copy.",
        "par_id4": "A list item",
        "td1": "Cell text <b>",
        "par_id5": "Windows only.",
        "par_id6": "Embedded",
        "par_id6#2": "Embedded again",
        "par_empty": "",
    }


def test_parse_help_tree_pairs_by_page_and_id(tmp_path):
    en_root, de_root = write_help_pages(
        tmp_path,
        {
            "text/a/one.html": [("p1", "Open the file.", "Öffnen Sie die Datei."), ("p2", "Close it.", "")],
            "text/b/two.html": [("p1", "Save the file.", "Speichern Sie die Datei."), ("p3", "SUM", "SUM")],
            "text/b/only_en.html": [("p1", "Lonely.", "Einsam.")],
        },
        de_missing_pages={"text/b/only_en.html"},
    )
    # An id present in English only.
    english = en_root / "text/a/one.html"
    english.write_text(english.read_text().replace("</div>", '<p id="p9">English only.</p></div>'))
    assert parse_help_tree(en_root, de_root) == [
        {"en": "Open the file.", "de": "Öffnen Sie die Datei.", "doc": "text/a/one.html", "id": "p1"},
        {"en": "Save the file.", "de": "Speichern Sie die Datei.", "doc": "text/b/two.html", "id": "p1"},
    ]
    with pytest.raises(FileNotFoundError, match="no 'text' folder"):
        parse_help_tree(tmp_path, de_root)


DING = """\
# Version :: devel 2023-01-30
# License :: GPL Version 2 or later; GNU General Public License
Haus {n} | Das Haus ist groß. :: house | The house is big.
Hund {m} | Der Hund [ugs.] bellt laut! :: dog | The dog barks <barcks> loudly [Am.]!
Frage {f} | Kommst du heute mit? | Was? :: question | Are you coming today?; Will you come along today? | What?
Katze {f} | Die Katze {f} schläft. :: cat | The cat sleeps.
Gehen {n} | Ich gehe; Ich laufe nach Hause. :: walking | I walk home.
nur eine Seite | Das hat zwei Seiten. :: only one side
Vogel {m} | der Vogel singt schön. | Der Vogel singt ohne Punkt :: bird | the bird sings. | The bird sings
Tipp {m} | Danke im Voraus! /TIA/ :: tip | Thanks in advance! /TIA/ (chat acronym)
Hilfe {f} | Ich helfe jdm. gern. :: help | I like to help sb.
Baum {m} | Der Baum ist  grün . :: tree | The tree is green .
spät | Es ist spät. / Es wird spät. | Es schneit heute. :: late | It is late. | It snows today. / It is snowing.
"""


def test_parse_ding_selects_example_sentences(tmp_path):
    path = tmp_path / "de-en"
    path.write_text(DING, encoding="utf-8")
    assert [(pair["de"], pair["en"]) for pair in parse_ding(path)] == [
        ("Das Haus ist groß.", "The house is big."),
        ("Der Hund bellt laut!", "The dog barks loudly!"),
        ("Kommst du heute mit?", "Are you coming today?"),
        ("Danke im Voraus!", "Thanks in advance!"),
        ("Der Baum ist grün.", "The tree is green."),
    ]
    assert {pair["doc"] for pair in parse_ding(path)} == {"ding"}
    with pytest.raises(FileNotFoundError, match="Ding dictionary file"):
        parse_ding(tmp_path / "missing")


def test_build_default_corpus(tmp_path, small_ding_splits):
    docs = write_corpus_packages(tmp_path)
    corpus = build_default_corpus(tmp_path, CORPUS_PACKAGE_VERSIONS)
    assert list(corpus) == ["train", "validation", "test_help", "test_dictionary"]
    for ds in corpus.values():
        assert ds.column_names == ["translation", "origin", "doc"]

    def docs_of(split, origin="help"):
        return {row["doc"] for row in corpus[split] if row["origin"] == origin}

    assert docs_of("train") == set(docs["train"])
    assert docs_of("validation") == set(docs["validation"])
    assert docs_of("test_help") == set(docs["test"])
    assert docs_of("test_dictionary") == set() and docs_of("test_help", "dictionary") == set()
    assert {row["doc"] for row in corpus["test_dictionary"]} == {"ding"}
    # Dictionary: 2 test, 1 validation, 5 train sentences.
    counts = {split: sum(row["origin"] == "dictionary" for row in corpus[split]) for split in corpus}
    assert counts == {"train": 5, "validation": 1, "test_help": 0, "test_dictionary": 2}

    train = [(row["translation"]["en"], row["translation"]["de"]) for row in corpus["train"]]
    assert ("Duplicate.", "Duplikat.") in train and len(set(train)) == len(train)
    assert not any(de == "Beispiel:" for _, de in train)  # leakage removed, by either side
    held_out = {
        row["translation"]["en"] for split in ("validation", "test_help", "test_dictionary") for row in corpus[split]
    }
    assert held_out.isdisjoint(en for en, _ in train)
    assert len(train) == 3 * 3 + 1 + 5  # 3 units on each train page, one "Duplicate.", 5 dictionary sentences

    # Deterministic, train and validation shuffled.
    again = build_default_corpus(tmp_path, CORPUS_PACKAGE_VERSIONS)
    assert again["train"]["translation"][:] == corpus["train"]["translation"][:]
    assert {row["origin"] for row in corpus["validation"]} == {"help", "dictionary"}

    card = corpus["train"].info.description
    for text in ("4:7.4.7-1", "1.9-6", "MPL-2.0", "GPL-2.0-or-later", "| train | 10 | 5 | 15 |", "2 help and"):
        assert text in card


def test_build_default_corpus_empty_split(tmp_path, small_ding_splits):
    write_help_pages(tmp_path / default_corpus.HELP_DIR, {help_docs_in(range(7, 100), 1)[0]: [("p", "A.", "B.")]})
    (tmp_path / default_corpus.DING_FILE).parent.mkdir(parents=True)
    (tmp_path / default_corpus.DING_FILE).write_text("")
    with pytest.raises(ValueError, match=r"no pairs in \['validation', 'test_help', 'test_dictionary'\]"):
        build_default_corpus(tmp_path, CORPUS_PACKAGE_VERSIONS)


def test_load_default_corpus_caches(tmp_path, fake_corpus_fetch, monkeypatch):
    corpus = load_default_corpus(tmp_path)
    assert isinstance(corpus, DatasetDict) and len(fake_corpus_fetch) == 1
    folder = tmp_path / "default_corpus-v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default_corpus-v1"]  # no staging folder left
    card = (folder / "README.md").read_text()
    for text in ("libreoffice-help-en-us", "trans-de-en", "`1.9-6`", "MPL-2.0", "GPL-2.0-or-later", "test_dictionary"):
        assert text in card
    assert "| test_dictionary | 0 | 2 | 2 |" in card

    monkeypatch.setattr(default_corpus, "fetch_packages", lambda dest: pytest.fail("the cache was not used"))
    cached = load_default_corpus(tmp_path)
    assert {split: ds.num_rows for split, ds in cached.items()} == {s: ds.num_rows for s, ds in corpus.items()}
    assert cached["train"]["translation"][:] == corpus["train"]["translation"][:]


def test_the_cache_records_what_was_fetched(tmp_path, fake_corpus_fetch, monkeypatch):
    """Each build records its package versions and a hash of its pairs; a build of other packages hashes otherwise."""
    first = default_corpus_record(tmp_path)
    assert first["packages"] == CORPUS_PACKAGE_VERSIONS
    assert len(first["sha256"]) == 64 and first["pairs"]["train"] == load_default_corpus(tmp_path)["train"].num_rows
    assert json.loads((tmp_path / "default_corpus-v1" / "fetch.json").read_text()) == first

    def other_fetch(dest):
        write_corpus_packages(dest)
        for page in (dest / default_corpus.HELP_DIR / "en-US").rglob("*.html"):
            page.write_text(page.read_text().replace("</p>", " (revised)</p>"))
        return {**CORPUS_PACKAGE_VERSIONS, "trans-de-en": "1.9-7"}

    monkeypatch.setattr(default_corpus, "fetch_packages", other_fetch)
    load_default_corpus(tmp_path, refresh=True)
    second = default_corpus_record(tmp_path)
    assert second["packages"]["trans-de-en"] == "1.9-7" and second["sha256"] != first["sha256"]


def test_a_cache_without_a_record_gets_one(tmp_path, fake_corpus_fetch):
    first = default_corpus_record(tmp_path)
    (tmp_path / "default_corpus-v1" / "fetch.json").unlink()
    assert default_corpus_record(tmp_path) == {**first, "packages": None}


def test_load_default_corpus_refresh_and_env(tmp_path, fake_corpus_fetch, monkeypatch):
    monkeypatch.setenv("VASWANI_HF_CACHE", str(tmp_path / "env"))
    load_default_corpus()
    (tmp_path / "env" / "default_corpus-v1" / "marker").write_text("old")
    load_default_corpus(refresh=True)
    assert len(fake_corpus_fetch) == 2
    assert sorted(p.name for p in (tmp_path / "env").iterdir()) == ["default_corpus-v1"]
    assert not (tmp_path / "env" / "default_corpus-v1" / "marker").exists()


def test_load_default_corpus_leaves_no_partial_cache(tmp_path, fake_corpus_fetch, monkeypatch):
    def fail_midway(self, path, **kwargs):
        os.makedirs(os.path.join(path, "train"))
        raise KeyboardInterrupt  # as if the user stopped the build while it was writing

    monkeypatch.setattr(DatasetDict, "save_to_disk", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        load_default_corpus(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_default_corpus_concurrent_build(tmp_path, fake_corpus_fetch, monkeypatch):
    # Another process finishes the same build while this one is busy: its cache is kept and loaded.
    other = load_default_corpus(tmp_path / "other")
    original_build = default_corpus.build_default_corpus

    def build_while_other_finishes(unpacked, versions):
        theirs = shutil.copytree(tmp_path / "other" / "default_corpus-v1", tmp_path / "mine" / "default_corpus-v1")
        (theirs / "marker").write_text("theirs")
        return original_build(unpacked, versions)

    monkeypatch.setattr(default_corpus, "build_default_corpus", build_while_other_finishes)
    mine = load_default_corpus(tmp_path / "mine")
    assert (tmp_path / "mine" / "default_corpus-v1" / "marker").exists()
    assert mine["train"]["translation"][:] == other["train"]["translation"][:]
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["default_corpus-v1"]


def test_fetch_packages_without_apt(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError) as err:
        fetch_packages(tmp_path / "dest")
    message = str(err.value)
    for text in ("apt-get and dpkg-deb are not on PATH", "load_parallel", "hub:wmt14:de-en"):
        assert text in message


def write_script(folder, name, body):
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """apt-get and dpkg-deb stand-ins first on PATH: a ".deb" is a text file "Package Version"; unpacking one
    creates usr/share/<package>."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_script(
        bin_dir,
        "apt-get",
        '[ "$1" = download ] || exit 2\nshift\n'
        '[ -n "$FAIL" ] && { echo "E: Unable to locate package $1" >&2; exit 100; }\n'
        'for p in "$@"; do echo "$p 1.0-$p" > "${p}_1.0_all.deb"; done\n',
    )
    write_script(
        bin_dir,
        "dpkg-deb",
        'case "$1" in\n'
        '  -f) read p v < "$2"; [ "$3" = Package ] && echo "$p" || echo "$v" ;;\n'
        '  -x) read p v < "$2"; mkdir -p "$3/usr/share/$p" ;;\n'
        "  *) exit 2 ;;\nesac\n",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_fetch_packages_with_fake_tools(tmp_path, fake_tools):
    versions = fetch_packages(tmp_path / "dest")
    assert versions == {name: f"1.0-{name}" for name in default_corpus.PACKAGES}
    assert sorted(p.name for p in (tmp_path / "dest/usr/share").iterdir()) == sorted(default_corpus.PACKAGES)


def test_fetch_packages_download_fails(tmp_path, fake_tools, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(
        RuntimeError, match=r"(?s)exit code 100.*Unable to locate package.*apt-get update.*load_parallel"
    ):
        fetch_packages(tmp_path / "dest")
