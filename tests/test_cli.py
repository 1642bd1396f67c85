"""The CLI through typer's CliRunner: every command, its JSON, its help, and its one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.main import get_command

from annot.cli.main import app
from conftest import invoke


@pytest.mark.slow
def test_every_command_has_help_text() -> None:
    group = get_command(app)
    assert group.help and len(group.commands) >= 14  # type: ignore[attr-defined]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"annot {name} has no help text"
        result = invoke(name, "--help")
        assert result.exit_code == 0 and "Usage" in result.output
        for param in command.params:
            assert param.help or param.name in {"help"}, f"annot {name}: {param.name} has no help"


def test_index_defaults_are_the_library_defaults() -> None:
    """`annot index` with no options builds exactly `BuildSettings()`: every option left out is the library's
    default (written once, in annot.settings), and with --projection kcca the scoring defaults are KCCA's."""
    from annot.settings import BuildSettings, ScoringSettings, build_settings

    params = {p.name: p.default for p in get_command(app).commands["index"].params}  # type: ignore[attr-defined]
    flags = {name: value for name, value in params.items() if name not in {"corpus", "store", "json_out", "wait"}}
    assert len(flags) >= 25 and all(v in (None, False) for v in flags.values()), flags
    assert build_settings() == BuildSettings()
    kcca = build_settings(projection="kcca")
    assert kcca.scoring == ScoringSettings.defaults_for("kcca") == ScoringSettings(k=8, temperature=0.05,
                                                                                    frequency_power=0.0)
    assert kcca.projection.normalization == "power" and BuildSettings().projection.normalization == "none"
    assert build_settings(projection="kcca", k=16).scoring.k == 16  # a flag given wins over the projection's default


@pytest.mark.slow
def test_index_query_eval_info_as_json(synthetic: dict[str, Path], tmp_path: Path) -> None:
    s = tmp_path / "cli.annot"
    result = invoke("index", synthetic["train"], "--store", s, "--encoder", "fake", "--words", synthetic["words"],
                    "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 160 and report["words"] == 8 and report["extracted"] == 160

    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    result = invoke("query", image, "--store", s, "--json", "--explain", "-n", "3")
    assert result.exit_code == 0, result.output
    annotation = json.loads(result.stdout)["annotations"][0]
    assert annotation["image"] == str(image) and len(annotation["tags"]) == 3
    assert all(t["evidence"] and Path(t["evidence"][0]["path"]).is_file() for t in annotation["tags"])

    result = invoke("eval", synthetic["test"], "--store", s, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["images"] == 40 and summary["R"] > 90

    result = invoke("info", "--store", s, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["counts"]["images.train"] == 160 and info["counts"]["images.test"] == 40
    assert info["vocabulary_size"] == 8


def test_query_a_directory_in_plain_text(store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for p in sorted((synthetic["folder"] / "images").glob("test-000*.jpeg"))[:3]:
        shutil.copy(p, folder)
    result = invoke("query", folder, "--store", store, "--method", "nn", "--explain")
    assert result.exit_code == 0, result.output
    assert result.output.count("test-000") >= 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("query", "{image}", "--store", "{tmp}/nowhere.annot"), "no such store"),
        (("query", "{tmp}/nope.jpg", "--store", "{store}"), "nope.jpg: no such file"),
        (("query", "{image}", "--store", "{store}", "--method", "magic"), "--method must be one of cca-knn, nn"),
        (("info", "--store", "{tmp}"), "not a complete store"),
        (("eval", "{tmp}/bad.jsonl", "--store", "{store}"), "bad.jsonl:2: not valid JSON"),
        (("index", "{tmp}/bad.jsonl", "--store", "{tmp}/new.annot", "--encoder", "fake"), "bad.jsonl:2: not valid JSON"),
        (("index", "{train}", "--store", "{tmp}/new.annot", "--encoder", "nope"), "unknown encoder 'nope'"),
        (("index", "{train}", "--store", "{tmp}/new.annot", "--encoder", "fake@huge"), "'fake@huge': the input size after @"),
        (("index", "{train}", "--store", "{tmp}/new.annot", "--words", "{tmp}/words.bin"), "words.bin: not a word-vector file"),
        (("index", "{train}", "--store", "{tmp}/new.annot", "--encoder", "alexnet", "--weights", "{tmp}/vgg.pth"),
         "vgg.pth: not alexnet weights"),
        (("index", "{train}", "--store", "{tmp}/new.annot", "--encoder", "efficientnet-lite0", "--weights", "{tmp}/bad.jsonl"),
         "bad.jsonl: not a torch weights file"),
        (("index", "{train}", "--store", "{tmp}/new.annot", "--text", "tfidf"), "--text must be one of"),
    ],
)
def test_errors_are_one_line_and_non_zero(args: tuple[str, ...], message: str, store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "tags": []}\n{"image": \n')
    (tmp_path / "words.bin").write_bytes(b"\x00\x01garbage")
    torch.save({"features.0.weight": torch.zeros(2, 2)}, tmp_path / "vgg.pth")
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    filled = [a.format(tmp=tmp_path, store=store, image=image, train=synthetic["train"]) for a in args]
    result = invoke(*filled)
    assert result.exit_code != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and message in " ".join(result.stderr.split()), result.stderr


def test_unreadable_query_image_is_named_after_the_others_are_answered(store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("hello")
    good = min((synthetic["folder"] / "images").glob("test-*.jpeg"))
    result = invoke("query", good, bad, "--store", store, "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert len(out["annotations"]) == 1 and str(bad) in out["failed"]
    assert "bad.jpg: not a readable image" in result.stderr


@pytest.mark.slow
def test_runs_sql_and_compare(store: Path, synthetic: dict[str, Path]) -> None:
    assert invoke("eval", synthetic["test"], "--store", store, "--method", "nn").exit_code == 0
    assert invoke("eval", synthetic["test"], "--store", store, "--method", "cca-knn", "--k", "1").exit_code == 0
    listed = json.loads(invoke("runs", "--store", store, "--json").stdout)
    assert [r["method"] for r in listed] == ["nn", "cca-knn"] and [r["id"] for r in listed] == [1, 2]

    result = invoke("sql", "SELECT run_id, count(*) AS n FROM predictions GROUP BY run_id ORDER BY run_id", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"run_id": 1, "n": 200}, {"run_id": 2, "n": 200}]
    csv_out = invoke("sql", "SELECT word FROM tags ORDER BY word LIMIT 2", "--store", store, "--csv").stdout
    assert csv_out.splitlines() == ["word", "city"] or csv_out.splitlines()[0] == "word"

    # the numbers in the database are the numbers on screen
    f1 = json.loads(invoke("sql", "SELECT f1 FROM runs WHERE id = 2", "--store", store, "--json").stdout)[0]["f1"]
    assert abs(100 * f1 - listed[1]["f1"] * 100) < 1e-9

    refused = invoke("sql", "DELETE FROM runs", "--store", store)
    assert refused.exit_code == 1 and "read-only" in refused.stderr
    assert len(json.loads(invoke("runs", "--store", store, "--json").stdout)) == 2  # nothing was deleted

    compared = json.loads(invoke("compare", "1", "2", "--store", store, "--json").stdout)
    assert set(compared) == {"gained", "lost", "unchanged"}
    assert all(c["delta"] > 0 for c in compared["gained"]) and all(c["delta"] < 0 for c in compared["lost"])
    assert len(compared["gained"]) + len(compared["lost"]) + compared["unchanged"] == 8
    missing = invoke("compare", "1", "9", "--store", store)
    assert missing.exit_code == 1 and "no run 9" in missing.stderr


@pytest.mark.slow
def test_tune_chooses_on_training_folds_and_rebuilds(synthetic: dict[str, Path], tmp_path: Path) -> None:
    s = tmp_path / "tuned.annot"
    assert invoke("index", synthetic["train"], "--store", s, "--encoder", "fake", "--words", synthetic["words"],
                  "--memory-budget", "1GB").exit_code == 0
    result = invoke("tune", "--store", s, "--folds", "3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    chosen = out["chosen"]
    assert out["top"][0]["candidate"] == chosen
    assert out["top"][0]["f1"] >= max(t["f1"] for t in out["top"])
    info = json.loads(invoke("info", "--store", s, "--json").stdout)
    settings = info["settings"]
    assert settings["scoring"]["k"] == chosen["k"] and settings["text"]["view"] == chosen["text"]
    assert settings["scoring"]["frequency_power"] == chosen["frequency_power"]
    assert settings["index"]["memory_budget"] == "1GB"  # what tune does not search stays the store's
    listed = json.loads(invoke("runs", "--store", s, "--json").stdout)
    assert len(listed) == len(out["runs"]) == 48 and all(r["dataset"].startswith("cv:3-fold:") for r in listed)
    assert info["counts"].get("images.test", 0) == 0  # nothing but the training corpus was touched
    # the reported ties are the recorded candidates within one paired standard error of the chosen one's fold F1s
    recorded = [json.loads(r["params_json"]) for r in json.loads(invoke("sql", "SELECT params_json FROM runs", "--store", s,
                                                                          "--json").stdout)]
    best = next(np.array(r["fold_f1"]) for r in recorded if {k: r[k] for k in chosen} == chosen)
    assert out["standard_error"] == pytest.approx(best.std(ddof=1) / np.sqrt(3)) and out["standard_error"] > 0
    gaps = [best - np.array(r["fold_f1"]) for r in recorded if {k: r[k] for k in chosen} != chosen]
    assert len(out["tied"]) == sum(g.mean() <= g.std(ddof=1) / np.sqrt(3) for g in gaps) < len(gaps)
    assert chosen not in out["tied"]


@pytest.mark.slow
def test_tune_on_cover_hold_outs_records_the_design(store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("tune", "--store", store, "--folds", "2", "--cv", "cover", "--holdout", "0.2", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(invoke("runs", "--store", store, "--json").stdout)
    assert len(listed) == 48 and all(r["dataset"].startswith("cv:2-cover:") for r in listed)
    params = json.loads(invoke("sql", "SELECT params_json FROM runs LIMIT 1", "--store", store, "--json").stdout)[0]
    recorded = json.loads(params["params_json"])
    assert recorded["cv"] == "cover" and recorded["holdout"] == 0.2 and len(recorded["fold_f1"]) == 2
    assert len(recorded["fold_n_plus"]) == 2
    manifest = (store / "manifest.json").read_bytes()
    for args, message in ((["--cv", "stratified"], "--cv must be one of random, cover"),
                          (["--cv", "cover", "--holdout", "2"], "--holdout must be a fraction"),
                          (["--min-f1", "140"], "--min-f1 must be a percentage"),
                          (["--grid", "huge"], "--grid must be one of quick, full"),
                          (["--folds", "1"], "--folds must be at least 2")):
        bad = invoke("tune", "--store", store, *args)
        assert bad.exit_code != 0 and message in bad.stderr, bad.output
        assert (store / "manifest.json").read_bytes() == manifest  # refused before anything was written
    missing = invoke("tune", "--store", tmp_path / "none.annot")
    assert missing.exit_code == 1 and "no such store" in missing.stderr


def test_progress_without_a_terminal_is_occasional_lines() -> None:
    """Where stderr is a log file, a long stage reports after `first` seconds, then every `every`, then its end;
    a stage shorter than `first` writes nothing."""
    from annot.cli.render import LineProgress

    now = [0.0]
    lines: list[str] = []
    progress = LineProgress(lines.append, first=10.0, every=60.0, clock=lambda: now[0])
    with progress.task("quick", 4) as advance:
        for _ in range(4):
            now[0] += 1.0
            advance(1)
    assert lines == []
    with progress.task("features", 100) as advance:
        for _ in range(100):
            now[0] += 2.0
            advance(1)
    # reports at 10 s (5 done), then 60 s later (35 done), 60 s after that (65), again (95), then the end
    assert [line.split(",")[0] for line in lines] == ["features: 5/100 (5%)", "features: 35/100 (35%)",
                                                     "features: 65/100 (65%)", "features: 95/100 (95%)",
                                                     "features: 100/100 (100%)"]
    # with the rate and, while unfinished, the time left at that rate
    assert lines[0] == "features: 5/100 (5%), 10s, 0.5/s, about 3m10s left"
    assert lines[-1] == "features: 100/100 (100%), 3m20s, 0.5/s, finished"
    lines.clear()
    with progress.task("statistics pass", None) as advance:
        now[0] += 30.0
        advance(1000)
    assert lines == ["statistics pass: 1,000 done, 30s, 33.3/s", "statistics pass: 1,000 done, 30s, 33.3/s, finished"]


@pytest.mark.slow
def test_tune_keeps_every_setting_it_does_not_search(synthetic: dict[str, Path], tmp_path: Path) -> None:
    s = tmp_path / "hnsw.annot"
    assert invoke("index", synthetic["train"], "--store", s, "--encoder", "fake", "--words", synthetic["words"],
                  "--index", "HNSW32", "--feature-dtype", "float16", "--batch-size", "7").exit_code == 0
    before = json.loads((s / "manifest.json").read_text())["settings"]
    result = invoke("tune", "--store", s, "--folds", "2", "--json")
    assert result.exit_code == 0, result.output
    after = json.loads((s / "manifest.json").read_text())
    assert after["index"]["factory"] == "HNSW32" and after["settings"]["index"]["kind"] == "HNSW32"
    assert after["settings"]["feature_dtype"] == "float16" and after["settings"]["batch_size"] == 7
    assert after["settings"]["encoder"] == before["encoder"] and after["settings"]["text"]["words"] == before["text"]["words"]
    chosen = json.loads(result.stdout)["chosen"]
    assert after["settings"]["scoring"]["k"] == chosen["k"]
