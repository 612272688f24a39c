"""The corpus preparation benchmark (vaswani_hf.benchmarks.corpus): its corpus, its clock and its report."""

import json
import sys

from vaswani_hf.benchmarks import corpus as bench


def test_the_corpus_repeats_the_training_pairs_as_numbered_variants(tmp_path, fake_corpus_fetch, monkeypatch):
    from vaswani_hf.data.default_corpus import load_default_corpus

    monkeypatch.setenv("VASWANI_HF_CACHE", str(tmp_path / "cache"))
    base = len(load_default_corpus()["train"])
    size = bench.build_corpus(tmp_path / "big", 2 * base + 3)
    english = (tmp_path / "big.en").read_text(encoding="utf-8").splitlines()
    german = (tmp_path / "big.de").read_text(encoding="utf-8").splitlines()
    assert len(english) == len(german) == size["pairs"] == 2 * base + 3 and size["base_pairs"] == base
    assert english[base] == f"{english[0]} (1)" and german[2 * base + 2] == f"{german[2]} (2)"
    assert len(set(zip(english, german, strict=True))) == len(english)  # no variant duplicates another


def test_the_clock_stops_at_the_training_bar_not_a_preparation_bar(tmp_path):
    script = (
        "import sys, time\n"
        "print('Map: 50%| 30/60 [00:01<00:01]', flush=True); time.sleep(0.6)\n"
        "print('updates: 50%| 3/4 [00:01<00:01]', flush=True); time.sleep(0.6)\n"
        "bytearray(50 * 2**20); print('updates: 100%| 4/4 [00:02<00:00]', flush=True)\n"
    )
    run = bench.timed([sys.executable, "-c", script], {}, tmp_path / "log", updates=4, initial=2)
    assert 0.5 < run["seconds_to_first_update"] < run["seconds"]
    assert run["peak_rss_mib"] >= 50 and run["peak_anonymous_mib"] > 0
    assert "3/4" in (tmp_path / "log").read_text()


def test_the_report_names_every_run_and_its_provenance():
    report = {
        "corpus": {"pairs": 4_500_000, "megabytes": 730.5, "base_pairs": 48_409},
        "runs": {
            "cold": {"seconds_to_first_update": 400.0, "seconds": 410.2, "peak_anonymous_mib": 1500, "peak_rss_mib": 2500},
            "stock": {"seconds_to_first_update": None, "seconds": 9.0, "peak_anonymous_mib": 10, "peak_rss_mib": 20},
        },
        "provenance": {"command": "benchmark_corpus.py", "commit": "abc", "cpu": {"model": "AMD EPYC", "cores": 2},
                       "versions": {"transformers": "5.25.0"}},
    }  # fmt: skip
    table = bench.markdown(json.loads(json.dumps(report)))
    assert "| cold | 400.0 | 410.2 | 1,500 | 2,500 |" in table and "| stock | - | 9.0 | 10 | 20 |" in table
    assert "4,500,000 pairs, 730.5 MB" in table and "AMD EPYC (2 cores); commit abc; transformers 5.25.0" in table
