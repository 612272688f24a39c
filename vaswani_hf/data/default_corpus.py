"""The built-in English-German corpus, built from parallel text that Debian packages carry.

``load_default_corpus()`` downloads (without installing) the LibreOffice help in English and German and the Ding
German-English dictionary with ``apt-get download``, pairs the help paragraphs by page and element id, picks the
dictionary's example sentences, holds out test and validation data, and caches the result with ``save_to_disk``.
It needs no Hugging Face Hub: any Debian or Ubuntu machine with apt can build it.

Run ``vaswani-corpus`` to build or load it and print the split sizes.
"""

import hashlib
import html.parser
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, Features, Translation, Value

from ..files import AtomicDir, write_atomic
from .parallel import normalise_whitespace

HELP_PACKAGES = ("libreoffice-help-en-us", "libreoffice-help-de")
DING_PACKAGE = "trans-de-en"
PACKAGES = (*HELP_PACKAGES, DING_PACKAGE)
HELP_DIR = Path("usr/share/libreoffice/help")
HELP_LANG_DIRS = {"en": "en-US", "de": "de"}
DING_FILE = Path("usr/share/trans/de-en")
CACHE_SUBDIR = "default_corpus-v1"
# What a cache was built from, beside its Arrow files: the package versions and a hash of the pairs. The packages move
# with the distribution, so two builds under the one cache name can differ; runs and results record this.
FETCH_RECORD = "fetch.json"
SPLITS = ("train", "validation", "test_help", "test_dictionary")
FEATURES = Features(
    {"translation": Translation(languages=["en", "de"]), "origin": Value("string"), "doc": Value("string")}
)

# Help pages whose sha1 % 100 falls here are held out whole: ~3% of the pages for validation, ~4% for test.
HELP_VALIDATION_BUCKETS = range(0, 3)
HELP_TEST_BUCKETS = range(3, 7)
# Dictionary sentences are held out by German sentence, the first ones in sha1 order.
DING_TEST_SENTENCES = 1000
DING_VALIDATION_SENTENCES = 500

ALTERNATIVES = (
    "use your own parallel files with vaswani_hf.data.parallel.load_parallel (aligned text files, TSV or JSONL), or a "
    "Hugging Face Hub dataset with load_parallel('hub:wmt14:de-en', src_lang='en', tgt_lang='de')"
)


def _bucket(key: str) -> int:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 100


# Elements whose text is one translation unit when they carry an id. Both languages are generated from the same
# source files, so an element's id names the same unit in both.
_UNIT_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "td"})
# Elements without an end tag: never pushed on the open-element stack.
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
# Tags that separate words when they start or end inside a unit, e.g. two <p> inside one <li>.
_BREAKING_TAGS = frozenset({"br", "div", "p", "li", "td", "th", "tr", "ul", "ol", "table", *_UNIT_TAGS})
# Stands for an inline icon while a unit's text is collected; "click the icon <img>." must not become "icon ."
_IMAGE = "\x00"
_IMAGE_BEFORE_PUNCTUATION = re.compile(r"\s*\x00\s*(?=[.,;:!?)]|$)")
# Classes of units that hold program code or formulas rather than prose.
_CODE_CLASSES = frozenset({"code", "codeintable", "smathcode"})


class _Switch:
    """A ``switch``/``switchinline`` span inside a unit: the text of each of its variants, kept apart until the
    span closes and one variant is chosen."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.variants: list[tuple[bool, list[str]]] = []  # (is the default variant, text parts)
        self.open_variant: int | None = None  # stack index of the variant being read

    def chosen(self) -> str:
        """The default variant's text, else the first variant's: what the help shows where no variant applies."""
        for is_default, parts in self.variants:
            if is_default:
                return "".join(parts)
        return "".join(self.variants[0][1]) if self.variants else ""


class _Unit:
    """An element with an id whose text is being collected."""

    def __init__(self, index: int, element_id: str) -> None:
        self.index = index
        self.element_id = element_id
        self.parts: list[str] = []
        self.switches: list[_Switch] = []
        self.hidden_from: int | None = None  # stack index of a hidden element outside any switch

    def add(self, text: str) -> None:
        if self.hidden_from is not None:
            return
        if not self.switches:
            self.parts.append(text)
        elif self.switches[-1].open_variant is not None:
            self.switches[-1].variants[-1][1].append(text)
        # Text between a switch's variants is layout whitespace.

    def open(self, index: int, attributes: dict[str, str | None]) -> None:
        if self.hidden_from is not None:
            return
        classes = (attributes.get("class") or "").split()
        if "switch" in classes or "switchinline" in classes:
            self.switches.append(_Switch(index))
        elif "hidden" in attributes:
            switch = self.switches[-1] if self.switches else None
            if switch is not None and switch.open_variant is None:
                switch.open_variant = index
                switch.variants.append(((attributes.get("id") or "").startswith("default"), []))
            elif switch is None:
                self.hidden_from = index

    def close(self, index: int) -> None:
        if self.hidden_from == index:
            self.hidden_from = None
        elif self.switches and self.switches[-1].open_variant == index:
            self.switches[-1].open_variant = None
        elif self.switches and self.switches[-1].index == index:
            self.add(self.switches.pop().chosen())


class _UnitParser(html.parser.HTMLParser):
    """Collects the text of every element of ``_UNIT_TAGS`` with an id, in document order.

    The help shows system- and module-specific variants, ``<span class="switchinline"><span hidden="true"
    id="MAC...">Command</span><span hidden="true" id="default...">Ctrl</span></span>``, between which the browser's
    script chooses. Inside a unit only one variant is kept, the default one or else the first, otherwise "Command
    Ctrl+S" would read as one phrase. A unit that is itself inside a variant (a paragraph shown on Windows only) is
    still a unit of its own.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.units: list[tuple[str, str]] = []
        self._open: list[str] = []  # tags of the open elements
        self._units: list[_Unit] = []  # open units, outermost first

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAKING_TAGS:
            self._add(" ")
        if tag == "img":
            self._add(_IMAGE)
        if tag in _VOID_TAGS:
            return
        attributes = dict(attrs)
        index = len(self._open)
        self._open.append(tag)
        for unit in self._units:
            unit.open(index, attributes)
        element_id = attributes.get("id")
        is_code = bool(_CODE_CLASSES & set((attributes.get("class") or "").split()))
        if tag in _UNIT_TAGS and element_id and not is_code:
            self._units.append(_Unit(index, element_id))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BREAKING_TAGS:
            self._add(" ")
        # Close up to the matching open tag; a stray end tag closes nothing.
        if tag in self._open:
            index = len(self._open) - 1 - self._open[::-1].index(tag)
            self._close_from(index)

    def handle_data(self, data: str) -> None:
        self._add(data)

    def close(self) -> None:
        super().close()
        self._close_from(0)

    def _add(self, text: str) -> None:
        for unit in self._units:
            unit.add(text)

    def _close_from(self, index: int) -> None:
        # Innermost first, so that a variant closes before its switch and a switch before its unit.
        for closing in range(len(self._open) - 1, index - 1, -1):
            self._open.pop()
            for unit in self._units:
                unit.close(closing)
            if self._units and self._units[-1].index == closing:
                unit = self._units.pop()
                text = _IMAGE_BEFORE_PUNCTUATION.sub("", "".join(unit.parts))
                self.units.append((unit.element_id, normalise_whitespace(text.replace(_IMAGE, " "))))


def parse_help_page(text: str) -> dict[str, str]:
    """The translation units of one help page: the collapsed, entity-decoded inner text of each p, h1-h6, li and
    td with an id (code paragraphs excepted), keyed by id. An id used again on the page (a section embedded twice)
    gets ``#2``, ``#3``... appended, so that repeats pair with the repeats of the other language."""
    parser = _UnitParser()
    parser.feed(text)
    parser.close()
    seen: Counter[str] = Counter()
    units = {}
    for element_id, unit in parser.units:
        seen[element_id] += 1
        units[element_id if seen[element_id] == 1 else f"{element_id}#{seen[element_id]}"] = unit
    return units


def parse_help_tree(en_root: str | os.PathLike, de_root: str | os.PathLike) -> list[dict]:
    """Pairs the English and German LibreOffice help, given the two language folders (``.../help/en-US`` and
    ``.../help/de``).

    Units are paired by page (its path relative to the language folder, e.g. ``text/swriter/guide/x.html``) and
    element id. Pairs with an empty side, and pairs whose two sides are identical (text left untranslated, or
    names, numbers and code that teach nothing but copying), are skipped.

    Returns:
        Dicts ``{"en", "de", "doc", "id"}`` in page order, ``doc`` being the page path.

    Raises:
        FileNotFoundError: if either folder has no ``text`` folder of help pages.
    """
    en_root, de_root = Path(en_root), Path(de_root)
    for root in (en_root, de_root):
        if not (root / "text").is_dir():
            raise FileNotFoundError(f"{str(root)!r} has no 'text' folder of help pages; pass a language folder")
    pairs = []
    for en_page in sorted((en_root / "text").rglob("*.html")):
        doc = en_page.relative_to(en_root).as_posix()
        de_page = de_root / doc
        if not de_page.is_file():
            continue
        de_units = parse_help_page(de_page.read_text(encoding="utf-8"))
        for unit_id, en in parse_help_page(en_page.read_text(encoding="utf-8")).items():
            de = de_units.get(unit_id, "")
            if en and de and en != de:
                pairs.append({"en": en, "de": de, "doc": doc, "id": unit_id})
    return pairs


# Ding's annotations: [usage labels] like [ugs.] or [Br.], <alternative spellings kept for search>, {grammar},
# and chat acronyms such as "Thanks in advance! /TIA/ (chat acronym)".
_DING_ANNOTATION = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}|(?<!\S)/[A-Z][A-Z0-9]+/(?!\S)(\s*\(chat acronym\))?")
# Entries with the placeholders jdn./etw. (sb./sth.) are phrase patterns, not sentences.
_DING_PLACEHOLDER = re.compile(r"\b(jd[mnrs]?|etw|sb|sth)\.")
# "It's late. / It's getting late.": whole alternative sentences after a slash, which have no counterpart on the
# other side and cannot be cut off reliably ("Oh blast!/Blast it! I've forgotten my key.").
_DING_ALTERNATIVE_SENTENCES = re.compile(r"[.!?]\s*/")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")


def _strip_ding(text: str) -> str:
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", normalise_whitespace(_DING_ANNOTATION.sub(" ", text)))


def parse_ding(path: str | os.PathLike) -> list[dict]:
    """The example sentences of the Ding German-English dictionary (lines ``German :: English``).

    Each side of a line holds alternatives separated by `` | ``, aligned by position; lines whose two sides have
    different numbers of alternatives are skipped. An alternative is an example sentence when its German

    - is a single variant (no ``;``) without grammar markers such as ``{m}`` or ``{vt}``;
    - once the annotations ``[...]`` (usage labels) and ``<...>`` (alternative spellings) are removed, starts with
      an uppercase letter, ends with ``.``, ``!`` or ``?`` and has at least 3 words;

    and neither side holds the placeholders ``jdn.``/``etw.``/``sb.``/``sth.`` of phrase patterns, nor whole
    alternative sentences after a slash (``It's late. / It's getting late.``). Its English is the first of its
    ``;``-separated variants, with annotations and chat acronyms such as ``/TIA/`` removed. Parentheses (optional
    words) and slashes between words (word alternatives) are the dictionary's own text and stay.

    Returns:
        Dicts ``{"en", "de", "doc": "ding"}`` in file order, repeats included.

    Raises:
        FileNotFoundError: if the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Ding dictionary file {str(path)!r} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or " :: " not in line:
                continue
            german, english = line.rstrip("\n").split(" :: ", 1)
            german_alternatives, english_alternatives = german.split(" | "), english.split(" | ")
            if len(german_alternatives) != len(english_alternatives):
                continue
            for de_raw, en_raw in zip(german_alternatives, english_alternatives, strict=True):
                if ";" in de_raw or "{" in de_raw:
                    continue
                de = _strip_ding(de_raw)
                en = _strip_ding(en_raw.split(";")[0])
                if _DING_PLACEHOLDER.search(f"{de} {en}") or _DING_ALTERNATIVE_SENTENCES.search(f"{de} {en}"):
                    continue
                if en and de[:1].isupper() and de.endswith((".", "!", "?")) and len(de.split()) >= 3:
                    pairs.append({"en": en, "de": de, "doc": "ding"})
    return pairs


def _help_split(doc: str) -> str:
    bucket = _bucket(doc)
    if bucket in HELP_VALIDATION_BUCKETS:
        return "validation"
    if bucket in HELP_TEST_BUCKETS:
        return "test_help"
    return "train"


def _ding_splits(pairs: list[dict]) -> dict[str, str]:
    """Maps each German sentence to its split. The first sentences in sha1 order are held out, so every
    translation of one German sentence lands in the same split, and the sizes are exact."""
    ordered = sorted({pair["de"] for pair in pairs}, key=lambda de: hashlib.sha1(de.encode("utf-8")).hexdigest())
    split_of = dict.fromkeys(ordered, "train")
    split_of.update(dict.fromkeys(ordered[:DING_TEST_SENTENCES], "test_dictionary"))
    held_out = DING_TEST_SENTENCES + DING_VALIDATION_SENTENCES
    split_of.update(dict.fromkeys(ordered[DING_TEST_SENTENCES:held_out], "validation"))
    return split_of


def _dedup(rows: list[dict]) -> list[dict]:
    """Keeps the first of each identical (English, German) pair."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for row in rows:
        key = (row["en"], row["de"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def _to_dataset(rows: list[dict]) -> Dataset:
    return Dataset.from_dict(
        {
            "translation": [{"en": row["en"], "de": row["de"]} for row in rows],
            "origin": [row["origin"] for row in rows],
            "doc": [row["doc"] for row in rows],
        },
        features=FEATURES,
    )


def build_default_corpus(unpacked_root: str | os.PathLike, versions: dict[str, str]) -> DatasetDict:
    """Builds the default corpus from the unpacked packages (a folder holding ``usr/share/...``).

    The help is split by page and the dictionary by German sentence (see the module constants). Within each split
    identical pairs are kept once; then every training pair whose English or German side also occurs in a held-out
    split is dropped, so that no test or validation sentence is seen in training. ``train`` and ``validation`` mix
    both origins, shuffled with seed 0. No other filtering is done: length and ratio filters are the trainer's
    business (``vaswani_hf.data.parallel.clean_parallel``).

    ``versions`` maps package names to their versions, for the dataset card, which is stored as each split's
    ``info.description``.

    Raises:
        FileNotFoundError: if the help folders or the dictionary file are missing under ``unpacked_root``.
        ValueError: if a split comes out empty (the packages' layout has changed).
    """
    root = Path(unpacked_root)
    help_root = root / HELP_DIR
    help_pairs = parse_help_tree(help_root / HELP_LANG_DIRS["en"], help_root / HELP_LANG_DIRS["de"])
    ding_pairs = parse_ding(root / DING_FILE)

    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for pair in help_pairs:
        rows[_help_split(pair["doc"])].append({**pair, "origin": "help"})
    ding_split = _ding_splits(ding_pairs)
    for pair in ding_pairs:
        rows[ding_split[pair["de"]]].append({**pair, "origin": "dictionary"})

    before_dedup = {split: Counter(row["origin"] for row in rows[split]) for split in SPLITS}
    rows = {split: _dedup(split_rows) for split, split_rows in rows.items()}
    duplicates = {split: before_dedup[split] - Counter(row["origin"] for row in rows[split]) for split in SPLITS}
    held_out = [row for split in SPLITS if split != "train" for row in rows[split]]
    held_en, held_de = {row["en"] for row in held_out}, {row["de"] for row in held_out}
    leaked = [row for row in rows["train"] if row["en"] in held_en or row["de"] in held_de]
    rows["train"] = [row for row in rows["train"] if row["en"] not in held_en and row["de"] not in held_de]
    for split in ("train", "validation"):
        random.Random(0).shuffle(rows[split])
    empty = [split for split in SPLITS if not rows[split]]
    if empty:
        raise ValueError(
            f"the default corpus has no pairs in {empty}; the packages' layout may have changed "
            f"(found {len(help_pairs)} help pairs, {len(ding_pairs)} dictionary sentences)"
        )

    corpus = DatasetDict({split: _to_dataset(rows[split]) for split in SPLITS})
    validation_pairs = {(row["en"], row["de"]) for row in rows["validation"]}
    stats = {
        "help_pairs": len(help_pairs),
        "help_pages": len({pair["doc"] for pair in help_pairs}),
        "ding_pairs": len(ding_pairs),
        "duplicates": duplicates,
        "leaked": Counter(row["origin"] for row in leaked),
        "validation_in_test": sum(
            (row["en"], row["de"]) in validation_pairs
            for split in ("test_help", "test_dictionary")
            for row in rows[split]
        ),
    }
    card = _dataset_card(corpus, versions, stats)
    for ds in corpus.values():
        ds.info.description = card
        ds.info.license = "MPL-2.0 (LibreOffice help) AND GPL-2.0-or-later (Ding dictionary)"
    return corpus


def _dataset_card(corpus: DatasetDict, versions: dict[str, str], stats: dict) -> str:
    """The README.md of the cached corpus: sources, licences, construction, held-out splits and counts."""
    licences = {**dict.fromkeys(HELP_PACKAGES, "MPL-2.0"), DING_PACKAGE: "GPL-2.0-or-later"}
    contents = {
        "libreoffice-help-en-us": "LibreOffice help, English (en-US)",
        "libreoffice-help-de": "LibreOffice help, German",
        DING_PACKAGE: "Ding German-English dictionary (Frank Richter, TU Chemnitz)",
    }
    sources = "\n".join(
        f"| `{package}` | `{versions.get(package, 'unknown')}` | {licences[package]} | {contents[package]} |"
        for package in PACKAGES
    )
    counts = []
    for split in SPLITS:
        origins = Counter(corpus[split]["origin"][:])
        counts.append(f"| {split} | {origins['help']} | {origins['dictionary']} | {corpus[split].num_rows} |")
    duplicates = "\n".join(
        f"| {split} | {stats['duplicates'][split]['help']} | {stats['duplicates'][split]['dictionary']} |"
        for split in SPLITS
    )
    total = sum(corpus[split].num_rows for split in SPLITS)
    validation_share = f"{HELP_VALIDATION_BUCKETS.start}-{HELP_VALIDATION_BUCKETS.stop - 1}"
    test_share = f"{HELP_TEST_BUCKETS.start}-{HELP_TEST_BUCKETS.stop - 1}"
    return f"""---
language:
- en
- de
task_categories:
- translation
pretty_name: vaswani_hf default English-German corpus
---

# vaswani_hf default English-German corpus ({CACHE_SUBDIR})

{total} English-German sentence pairs built by `vaswani_hf.data.default_corpus` from Debian packages, without the
Hugging Face Hub. Load it with `vaswani_hf.data.default_corpus.load_default_corpus()` or `datasets.load_from_disk()`
on this folder.

## Sources and licences

| Package | Version | Licence | Content |
|---|---|---|---|
{sources}

Rows with `origin` "help" derive from the LibreOffice help and are under the MPL-2.0; rows with `origin`
"dictionary" derive from the Ding dictionary and are under the GPL-2.0-or-later. Redistributing this dataset means
honouring both licences.

## Columns

- `translation`: `{{"en": ..., "de": ...}}`, the layout of the WMT datasets on the Hub.
- `origin`: "help" or "dictionary".
- `doc`: for help pairs the page, relative to the language folder (e.g. `text/swriter/guide/...html`); "ding"
  for dictionary pairs.

## How the pairs were built

**LibreOffice help.** Both languages carry the same pages under `usr/share/libreoffice/help/{{en-US,de}}/text/`,
generated from the same sources, so an element id names the same text in both. Every `p`, `h1`-`h6`, `li` and `td`
with an `id` is one unit; its text is the whole inner text (nested tags included, entities decoded, whitespace
collapsed). Where the help offers system- or module-specific variants (`<span hidden="true" ...>`, e.g. "Command"
on macOS and "Ctrl" elsewhere), only the default variant, or else the first, is kept. Code paragraphs (classes `code`,
`codeintable`, `smathcode`) are left out. Units are paired by (page, id); pairs with an empty side, and pairs whose
two sides are identical (untranslated text, names, numbers, formulas), are skipped. This gave
{stats["help_pairs"]} pairs on {stats["help_pages"]} pages before de-duplication; many are short labels such as
"Example:" / "Beispiel:" because pages embed shared sections.

**Ding dictionary.** Lines of `usr/share/trans/de-en` read `German :: English`; each side lists alternatives
separated by ` | `, aligned by position (lines where the counts differ are skipped). An alternative is kept as an
example sentence when its German is a single variant (no `;`) without grammar markers (`{{m}}`, `{{vt}}`, ...) and,
once the annotations `[...]` (usage labels such as `[ugs.]`, `[Br.]`), `<...>` (alternative spellings) and chat
acronyms (`/TIA/`) are removed from both sides, starts with an uppercase letter, ends with `.`, `!` or `?` and has
at least 3 words. Entries with the placeholders `jdn.`/`etw.`/`sb.`/`sth.` (phrase patterns) and entries offering
whole alternative sentences after a slash (`It's late. / It's getting late.`) are skipped. The English is the first
of its `;`-separated variants. Parentheses (optional words) and slashes between words (word alternatives) are the
dictionary's own text and were kept. This gave {stats["ding_pairs"]} pairs.

## Splits

- `test_help` and the help part of `validation` are whole pages, never split: a page whose path has
  `sha1(path) % 100` in {validation_share} goes to validation, in {test_share} to test, all others to train.
- `test_dictionary` holds the first {DING_TEST_SENTENCES} distinct German sentences in sha1 order and the
  dictionary part of `validation` the next {DING_VALIDATION_SENTENCES}; every translation of one German sentence
  is in the same split.
- `train` and `validation` mix both origins, shuffled with seed 0; the test splits keep page and file order.

Within each split identical pairs are kept once. Then every training pair whose English or whose German side also
occurs in `validation`, `test_help` or `test_dictionary` was removed, {stats["leaked"]["help"]} help and
{stats["leaked"]["dictionary"]} dictionary pairs, so that no held-out sentence is seen in training.
{stats["validation_in_test"]} test pairs also occur in `validation` (short labels shared between pages); they were
kept. No length or ratio filtering was done: apply `vaswani_hf.data.parallel.clean_parallel` for training.

## Row counts

| Split | help | dictionary | total |
|---|---|---|---|
{chr(10).join(counts)}

Duplicate pairs removed per split:

| Split | help | dictionary |
|---|---|---|
{duplicates}
"""


def _run(command: list[str], *, cwd: str | os.PathLike | None = None, timeout: float = 600) -> str:
    """Runs a command, returning its stdout; raises RuntimeError with its stderr and the alternatives."""
    try:
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(
            f"`{' '.join(command)}` did not finish within {timeout:.0f} s; check the network and the apt "
            f"sources. Alternatively, {ALTERNATIVES}"
        ) from err
    if result.returncode != 0:
        hint = ""
        if "Unable to locate package" in result.stderr:
            hint = " The package lists may be missing or outdated: run `apt-get update` (as root)."
        raise RuntimeError(
            f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{result.stderr.strip()[-2000:]}\n"
            f"{hint} Alternatively, {ALTERNATIVES}"
        )
    return result.stdout


def fetch_packages(dest: str | os.PathLike) -> dict[str, str]:
    """Downloads the packages of the default corpus with ``apt-get download`` (no installation) and unpacks them
    into ``dest`` with ``dpkg-deb -x``.

    Returns:
        The exact version of each package, ``{name: version}``.

    Raises:
        RuntimeError: if ``apt-get`` or ``dpkg-deb`` is not on PATH, or a download or unpacking fails; the message
            points to the alternatives (your own files through ``load_parallel``, or a Hub dataset).
    """
    tools = {name: shutil.which(name) for name in ("apt-get", "dpkg-deb")}
    missing = [name for name, found in tools.items() if found is None]
    if missing:
        raise RuntimeError(
            f"the default corpus is built from Debian packages, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH (it needs a Debian or Ubuntu system with apt). "
            f"Instead, {ALTERNATIVES}"
        )
    apt_get, dpkg_deb = tools["apt-get"], tools["dpkg-deb"]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    versions = {}
    with tempfile.TemporaryDirectory(prefix="vaswani_hf-debs-") as download_dir:
        _run([apt_get, "download", *PACKAGES], cwd=download_dir)
        for deb in sorted(Path(download_dir).glob("*.deb")):
            package = _run([dpkg_deb, "-f", str(deb), "Package"]).strip()
            versions[package] = _run([dpkg_deb, "-f", str(deb), "Version"]).strip()
            _run([dpkg_deb, "-x", str(deb), str(dest)])
    not_fetched = [package for package in PACKAGES if package not in versions]
    if not_fetched:
        raise RuntimeError(
            f"`apt-get download` succeeded but gave no .deb for {not_fetched}. Alternatively, {ALTERNATIVES}"
        )
    return {package: versions[package] for package in PACKAGES}


def default_cache_dir() -> Path:
    """``$VASWANI_HF_CACHE`` if set, else ``~/.cache/vaswani_hf``."""
    return Path(os.environ.get("VASWANI_HF_CACHE") or Path.home() / ".cache" / "vaswani_hf")


def content_sha256(corpus: DatasetDict) -> str:
    """A hash of every pair of every split, in order (with origin and page): equal for two builds exactly when they
    hold the same data."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(f"\x00{split}\x00".encode())
        for row in corpus[split]:
            digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def fetch_record(corpus: DatasetDict, versions: dict[str, str] | None) -> dict:
    """The record of one build: `{"packages": {name: version}, "sha256": ..., "pairs": {split: count}}`."""
    return {
        "packages": versions,
        "sha256": content_sha256(corpus),
        "pairs": {split: corpus[split].num_rows for split in SPLITS},
    }


def default_corpus_record(cache_dir: str | os.PathLike | None = None) -> dict:
    """The `fetch_record` of the cached default corpus (built first if there is none). A cache built before the
    record existed gets one on first use, with `"packages": None`: its versions were not kept apart from its card."""
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / CACHE_SUBDIR
    corpus = load_default_corpus(cache_dir)
    path = folder / FETCH_RECORD
    if not path.is_file():
        write_atomic(path, json.dumps(fetch_record(corpus, None), indent=2) + "\n")
    return json.loads(path.read_text(encoding="utf-8"))


def _load_cached(folder: Path) -> DatasetDict:
    corpus = datasets.load_from_disk(str(folder))
    if not isinstance(corpus, DatasetDict) or set(corpus) != set(SPLITS):
        raise ValueError(
            f"{str(folder)!r} does not hold the default corpus (splits {SPLITS}); delete it or pass refresh=True"
        )
    return corpus


def load_default_corpus(cache_dir: str | os.PathLike | None = None, *, refresh: bool = False) -> DatasetDict:
    """The built-in English-German corpus: splits ``train``, ``validation``, ``test_help`` and ``test_dictionary``
    with columns ``translation`` (``{"en", "de"}``), ``origin`` ("help" or "dictionary") and ``doc``.

    The first call downloads the Debian packages (see :func:`fetch_packages`), builds the corpus and saves it under
    ``cache_dir/default_corpus-v1`` (``cache_dir`` defaults to :func:`default_cache_dir`) with a dataset card
    ``README.md``; later calls load that folder without apt. ``refresh=True`` rebuilds it. The folder is written
    elsewhere first and moved into place in one step, so an interrupted build leaves no partial cache.

    Raises:
        RuntimeError: if the packages cannot be fetched (no apt, no network); the message names the alternatives.
    """
    parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = parent / CACHE_SUBDIR
    if target.is_dir() and not refresh:
        return _load_cached(target)

    with tempfile.TemporaryDirectory(prefix="vaswani_hf-packages-") as unpacked:
        versions = fetch_packages(unpacked)
        corpus = build_default_corpus(unpacked, versions)

    try:
        with AtomicDir(target, replace=refresh) as staging:
            corpus.save_to_disk(str(staging))
            (staging / "README.md").write_text(corpus["train"].info.description, encoding="utf-8")
            (staging / FETCH_RECORD).write_text(json.dumps(fetch_record(corpus, versions), indent=2) + "\n")
    except FileExistsError:
        # Another process finished the same build first; its cache is as good as this one.
        if not target.is_dir():
            raise
    return _load_cached(target)
