"""`mlmkit stats`: the command asks the run's family (token or char) and prints a table, JSON or a PNG."""

import json

import pytest

from cli_runner import run_cli


def test_stats_on_names_prints_json_and_plots(capsys, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    data = tmp_path / "names.csv"
    data.write_text("domain,rank\nexample.com,1\nexample.org,2\nnot a name,3\nfoo.co.uk,4\n")
    png = tmp_path / "names.png"
    code, out, err = run_cli(["stats", str(data), "--preset", "domains-tiny", "--set", "train.progress=false",
                              "--json", "--plot", str(png)], capsys, monkeypatch)
    assert code == 0, err
    r = json.loads(out)
    assert (r["family"], r["rows"], r["valid"], r["invalid_reasons"]) == ("char", 4, 3, {"bad_char": 1})
    assert r["tlds"]["top"] == {"com": 1, "org": 1, "uk": 1} and "histograms" not in r
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 1000 and f"wrote {png}" in err


def test_stats_on_text_prints_the_table(capsys, monkeypatch, tmp_path, tiny_model_dir):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"review": " ".join(["the"] * n)}) + "\n" for n in (3, 10, 20)))
    code, out, err = run_cli(["stats", str(data), "--init-from", str(tiny_model_dir), "--set", "data.text_column=review",
                              "--set", "data.max_length=8", "--set", "train.progress=false", "--vocab-sizes", ""],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "records over max_length  2 (66.67%) have more than 6 tokens" in out
    assert "tokens            33" in out and "vocabulary size" not in out


def test_stats_without_data_is_a_one_line_error(capsys, monkeypatch):
    code, _, err = run_cli(["stats"], capsys, monkeypatch)
    assert code == 2 and err.strip().startswith("error:") and "data.train" in err
