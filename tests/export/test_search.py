"""The compression search (``python -m export.search``): a handful of real trials on the fixture policy, its
outputs, its resume, the pick added to the manifest and loaded back, and its refusals; the decision rules
on controlled records.

What a trial *measures* (which settings pass, how fast they are) depends on the host; what is asserted is
how the search records, ranks and picks them, recomputed from its own outputs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from backends.manifest import file_sha256, load_manifest
from backends.profiles import load_profile
from backends.registry import get_backend
from export.__main__ import main as export_main
from export.quantize import PRECISIONS
from export.search import (
    OBJECTIVES,
    SearchConfig,
    Space,
    choose,
    dominance,
    focus_queue,
    main,
    make_space,
    pareto_front,
    suggest,
    trial_params,
)
from export.sources import SOURCES, source_builder

TRIALS = 4


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, teacher: Path, student: Path, dataset_path: Path
) -> Path:
    """A small gridworld export of the fixture teacher (three variants), its manifest's path."""
    out = tmp_path_factory.mktemp("search") / "artifacts" / "x86"
    argv = ["--target", "x86", "--checkpoint", str(teacher), "--distilled", str(student)]
    argv += ["--dataset", str(dataset_path), "--out", str(out), "--variants", "float,int8-static", "--quiet"]
    assert export_main(argv) == 0
    return out / "manifest.json"


def _search_args(manifest: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        "--manifest", str(manifest), "--out", str(out), "--study", "t", "--trials", str(trials),
        "--population", "2", "--min-iters", "700", "--min-return-ratio", "0", "--no-progress", "--no-chart",
        "--repeats", "1", *extra,
    ]  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def searched(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study folder after one search of :data:`TRIALS` trials over ``exported``."""
    out = tmp_path_factory.mktemp("studies")
    assert main(_search_args(exported, out, TRIALS)) == 0
    return out / "t"


@pytest.mark.slow
def test_search_records_every_trial(searched: Path) -> None:
    rows = _rows(searched / "trials.csv")
    assert [int(r["number"]) for r in rows] == list(range(TRIALS))
    for r in rows:
        assert r["status"] in ("ok", "gate-failed", "build-failed", "measure-failed")
        assert (r["state"] == "complete") == (r["status"] in ("ok", "gate-failed"))
        if r["state"] == "complete":  # built, gated and timed: every objective has its figure
            assert float(r["lat_p99_us"]) >= float(r["lat_p50_us"]) > 0
            assert int(r["size_bytes"]) > 0 and float(r["return_ratio"]) > 0
            assert (searched / "trials" / r["number"] / "manifest.json").is_file()
        else:
            assert r["reason"]
        if r["status"] == "gate-failed":
            assert r["reason"] and r["pareto"] == "0"
    fixed = _rows(searched / "fixed.csv")
    assert {(f["variant"], f["backend"]) for f in fixed} >= {
        ("float", "onnxruntime"),
        ("int8-static", "onnxruntime"),
    }
    assert all(float(f["lat_p99_us"]) > 0 for f in fixed)


@pytest.mark.slow
def test_search_picks_by_its_rule_and_adds_the_pick_to_the_manifest(searched: Path, exported: Path) -> None:
    summary = json.loads((searched / "search.json").read_text())
    rows = _rows(searched / "trials.csv")
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        assert summary["chosen"] is None and "no trial" in summary["chosen_reason"]
        return
    fastest = min(ok, key=lambda r: float(r["lat_p99_us"]))
    assert summary["chosen"]["number"] == int(fastest["number"])
    assert [r["number"] for r in rows if r["chosen"] == "1"] == [fastest["number"]]
    assert fastest["pareto"] == "1"  # the fastest feasible trial is never dominated on p99
    manifest = load_manifest(exported)
    (entry,) = [a for a in manifest.artifacts if a.variant == "searched"]
    assert entry.extra["search"]["trial"] == int(fastest["number"])
    assert entry.path.startswith("searched/") and file_sha256(manifest.artifact_path(entry)) == entry.sha256
    assert entry.backends == [fastest["backend"]]
    backend = get_backend(fastest["backend"]).from_manifest(
        manifest, entry, load_profile("x86").settings_for(fastest["backend"])
    )
    obs = np.zeros((3, 6), dtype=np.float32)
    with backend:
        assert backend.infer(obs).shape == (3, 3)
    assert {"float", "int8-static"} <= {a.variant for a in manifest.artifacts}  # the fixed ones stay


@pytest.mark.slow
def test_a_study_resumes(searched: Path, exported: Path) -> None:
    assert main(_search_args(exported, searched.parent, 1)) == 0
    rows = _rows(searched / "trials.csv")
    assert [int(r["number"]) for r in rows] == list(range(TRIALS + 1))
    assert json.loads((searched / "search.json").read_text())["trials"] == TRIALS + 1
    # the same study with other objectives would mix two searches: refused, nothing changed
    code = main(_search_args(exported, searched.parent, 1, "--objectives", "return,size"))
    assert code == 2 and len(_rows(searched / "trials.csv")) == TRIALS + 1


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--manifest", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert "make export" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--objectives", "return,speed"])
    assert exit_info.value.code == 2
    assert "choose from return, p99, size, rss" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ decision rules


def _record(number: int, status: str = "ok", **figures: float) -> dict[str, Any]:
    base = {
        "return_ratio": 1.0,
        "mean_return": 9.0,
        "lat_p99_us": 100.0,
        "size_bytes": 1000,
        "peak_rss_mb": 50,
    }
    return {"number": number, "status": status, **base, **figures}


def test_pareto_front_keeps_the_undominated_feasible_trials() -> None:
    records = [
        _record(0, lat_p99_us=50, size_bytes=2000),
        _record(1, lat_p99_us=80, size_bytes=900),
        _record(2, lat_p99_us=90, size_bytes=2000),  # dominated by 0 (slower, same size and return)
        _record(3, lat_p99_us=10, size_bytes=10, status="gate-failed"),  # infeasible: never on the front
        _record(4, return_ratio=1.1, lat_p99_us=200, size_bytes=5000),  # the best return
    ]
    assert pareto_front(records, ("return", "p99", "size")) == [0, 1, 4]
    assert pareto_front(records, ("p99",)) == [0]


def test_choose_applies_the_rule() -> None:
    records = [
        _record(0, return_ratio=0.95, lat_p99_us=10),
        _record(1, lat_p99_us=30, size_bytes=500),
        _record(2, lat_p99_us=20, size_bytes=800, peak_rss_mb=40),
        _record(3, status="gate-failed", lat_p99_us=5),
    ]
    config = SearchConfig(pick="fastest", min_return_ratio=0.99)
    assert choose(records, config)[0]["number"] == 2  # 0 loses return, 3 its gate
    assert choose(records, SearchConfig(pick="smallest"))[0]["number"] == 1
    assert choose(records, SearchConfig(pick="lightest"))[0]["number"] == 2
    assert choose(records, SearchConfig(pick="fastest", min_return_ratio=0.9))[0]["number"] == 0
    # timings within the noise of the fastest tie, and the smallest of them wins
    tied = [*records, _record(4, lat_p99_us=21, size_bytes=300), _record(5, lat_p99_us=23, size_bytes=100)]
    chosen, why = choose(tied, config)
    assert chosen["number"] == 4 and "the smallest of the 2 within its timing noise" in why
    chosen, why = choose(records, SearchConfig(min_return_ratio=1.5))
    assert chosen is None and "no trial keeps 1.5" in why and "(3 of 4 trials passed the gate)" in why


def test_dominance_compares_at_equal_return() -> None:
    class Subject:
        exact, float_ci = False, (8.0, 10.0)  # seeded returns: a 1.0 CI half-width

    fixed = [
        {
            "variant": "a",
            "backend": "onnxruntime",
            "status": "ok",
            **_record(0, mean_return=9.5, lat_p99_us=150),
        },
        {
            "variant": "b",
            "backend": "onnxruntime",
            "status": "ok",
            **_record(0, mean_return=11.0, lat_p99_us=150),
        },
        {**_record(0, lat_p99_us=90, size_bytes=900), "variant": "c", "backend": "openvino", "status": "ok"},
        {**_record(0), "variant": "d", "backend": "onnxruntime", "status": "failed"},  # not compared
        {**_record(0), "variant": "a", "backend": "torch", "status": "ok"},  # the reference, not a deployment
    ]
    verdicts = dominance(_record(9), fixed, Subject(), SearchConfig())  # type: ignore[arg-type]
    by = {d["variant"]: d for d in verdicts}
    assert set(by) == {"a", "b", "c"} and len(verdicts) == 3
    assert by["a"]["dominates"] and by["a"]["better_on"] == ["p99"]
    assert not by["b"]["return_ok"] and not by["b"]["dominates"]  # 9.0 < 11.0 − 1.0
    assert not by["c"]["dominates"] and by["c"]["return_ok"]  # faster and smaller than the pick
    # within the noise: 5 % faster, 0.5 MB lighter or a few bytes smaller is not better
    near = {
        **_record(0, lat_p99_us=105, peak_rss_mb=50.5),
        "variant": "e",
        "backend": "numpy",
        "status": "ok",
    }
    (verdict,) = dominance(_record(9, size_bytes=996), [near], Subject(), SearchConfig())  # type: ignore[arg-type]
    assert verdict["better_on"] == [] and not verdict["dominates"]


def test_the_space_follows_the_export(exported: Path) -> None:
    import optuna

    space = make_space(load_profile("x86"), load_manifest(exported), graph_only=False, n_calib=300)
    assert space.calibration == (64, 256, 300) and space.equalize
    assert space.backends["int8-dynamic"] == ("onnxruntime",)  # no int8 in numpy, no int8-dynamic IR
    assert "numpy" not in space.backends["int8-static"] and "openvino" in space.backends["int8-static"]
    graph = Space(("float", "distilled"), False, {"int8-static": ("openvino",)}, (64,))
    study = optuna.create_study(directions=["minimize"])
    for _ in range(20):
        plan = suggest(study.ask(), graph)
        assert not plan.source.startswith("pruned") and plan.backend == "openvino"
        # NNCF quantizes the IR: only the calibration size applies to it
        assert plan.calibration == 64 and plan.per_channel is None and plan.equalize is None
    assert set(OBJECTIVES) == {"return", "p99", "size", "rss"}


# ------------------------------------------------------------------------------ the parametrized export


def test_sized_sources_parse() -> None:
    assert source_builder("float") is SOURCES["float"]
    assert source_builder("pruned-45").args == (0.45,)  # type: ignore[attr-defined]
    assert source_builder("distilled-20").args == (0.2,)  # type: ignore[attr-defined]
    for bad in ("pruned-0", "pruned-96", "distilled-x", "student-10"):
        with pytest.raises(ValueError, match=r"unknown source.*pruned-<1\.\.95>"):
            source_builder(bad)


def _weight_scales(path: Path) -> list[np.ndarray]:
    model = onnx.load_model(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = {n.input[1] for n in model.graph.node if n.op_type in ("Gemm", "MatMul")}
    # the scale of each DequantizeLinear that feeds a weight
    return [
        inits[n.input[1]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.output[0] in weights
    ]


def test_int8_options_change_the_graph(tmp_path: Path, teacher: Path, dataset_path: Path) -> None:
    from export.onnx_export import export_onnx
    from train.checkpoint import load_checkpoint
    from train.dataset import load_dataset
    from train.evaluate import flat_obs

    model, config, _ = load_checkpoint(teacher)
    src = tmp_path / "fp32.onnx"
    export_onnx(model, config.obs_dim, config.n_actions, src, {})
    calib = flat_obs(load_dataset(dataset_path).observations)[:200]
    static = PRECISIONS["int8-static"]
    channel = static.apply(src, tmp_path / "c.onnx", calib)
    tensor = static.apply(src, tmp_path / "t.onnx", calib, per_channel=False, equalize=False)
    assert {s.size for s in _weight_scales(tmp_path / "t.onnx")} == {1}  # one scale per weight tensor
    assert max(s.size for s in _weight_scales(tmp_path / "c.onnx")) > 1  # one per output channel
    assert "per-tensor" in tensor["quantization"] and "unequalized" in tensor["quantization"]
    assert tensor["activation_spreads"] is None and channel["activation_spreads"]
    assert set(static.options) == {"per_channel", "equalize"} and not PRECISIONS["fp16"].options


def test_trials_are_timed_by_the_benchmark_matrix(exported: Path) -> None:
    """The timing cell is ``python -m benchmarks`` itself, with the executor passed through (a Ray run of the
    search was shown by hand: docs/search.md), on the edge backends the manifest lists."""
    from export.search import bench_command

    config = SearchConfig(executor="ray", address="10.0.0.1:6379", min_iters=700)
    cmd = bench_command(exported, Path("out"), config)
    assert cmd[1:3] == ["-m", "benchmarks"] and cmd[cmd.index("--executor") + 1] == "ray"
    assert (
        cmd[cmd.index("--address") + 1] == "10.0.0.1:6379" and cmd[cmd.index("--scenarios") + 1] == "latency"
    )
    assert cmd[cmd.index("--backends") + 1] == "onnxruntime,openvino,numpy"  # not the torch reference


@pytest.mark.slow
def test_the_timing_cells_run_on_a_ray_fleet(exported: Path, tmp_path: Path) -> None:
    """``--executor ray``: every timing cell (the trial's and the final side-by-side ones) runs as a Ray
    task on a node offering target_x86 — here a local Ray instance the search's benchmark processes join."""
    ray = pytest.importorskip("ray", reason='Ray is the optional fleet extra: pip install -e ".[fleet]"')
    ray.init(
        address="local", num_cpus=2, resources={"target_x86": 1}, include_dashboard=False, log_to_driver=False
    )
    try:
        address = ray.get_runtime_context().gcs_address
        assert main(_search_args(exported, tmp_path, 1, "--executor", "ray", "--address", address)) == 0
    finally:
        ray.shutdown()
    runs = sorted((tmp_path / "t").rglob("bench_*.json"))
    # the fixed variants' timing (one repeat), and the trial's unless its build failed
    assert len(list((tmp_path / "t" / "bench-fixed").glob("bench_*.json"))) == 1 and len(runs) <= 2
    for path in runs:
        run = json.loads(path.read_text())
        assert run["args"]["executor"] == "ray" and run["hosts"]
        assert all(cell["status"] == "ok" for cell in run["cells"]), run["cells"]


def test_the_focused_round_tries_the_neighbours_of_the_front() -> None:
    import optuna

    space = Space(
        ("float", "pruned", "distilled"),
        True,
        {"fp32": ("onnxruntime", "numpy"), "int8-static": ("onnxruntime", "openvino")},
        (64, 256, 1024),
    )
    front = {
        **_record(0),
        "source": "pruned-40",
        "precision": "int8-static",
        "backend": "onnxruntime",
        "per_channel": True,
        "equalize": False,
        "calibration": 256,
    }
    behind = {**_record(1, lat_p99_us=500), "source": "float", "precision": "fp32", "backend": "numpy"}
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    assert focus_queue(study, [front, behind], space, ("return", "p99", "size"), limit=99) == 7
    plans = [suggest(study.ask(), space) for _ in range(7)]
    # one step each: the pruning ratio either side, the calibration either side, each int8 option flipped,
    # and the other backend (OpenVINO: the calibration size only)
    assert {p.source for p in plans} == {"pruned-30", "pruned-40", "pruned-50"}
    assert sorted(p.calibration for p in plans) == [64, 256, 256, 256, 256, 256, 1024]
    assert sum(p.per_channel is False for p in plans) == 1 and sum(p.equalize is True for p in plans) == 1
    (openvino,) = [p for p in plans if p.backend == "openvino"]
    assert openvino.per_channel is None and openvino.equalize is None
    assert all(trial_params({**front, **vars(p)}) != trial_params(front) for p in plans)  # none repeats it
    assert focus_queue(study, [front, behind], space, ("return", "p99", "size"), limit=2) == 2


def test_only_the_pick_just_added_is_compared_by_its_retiming(exported: Path) -> None:
    """The final side-by-side timing of ``searched`` is the pick's only when this call added it: with
    --no-add-to-manifest the manifest's ``searched`` is an earlier pick, and the trial's own timing counts."""
    from types import SimpleNamespace

    from export.search import decide

    subject = SimpleNamespace(
        manifest=load_manifest(exported), manifest_path=exported, float_return=9.0, float_ci=(9.0, 9.0),
        exact=True,
    )  # fmt: skip
    pick = {**_record(0, lat_p99_us=100.0), "source": "float", "precision": "fp32", "backend": "onnxruntime"}
    fixed = [
        {**_record(0, lat_p99_us=80.0), "variant": "float", "backend": "onnxruntime", "status": "ok"},
        {**_record(0, lat_p99_us=50.0), "variant": "searched", "backend": "onnxruntime", "status": "ok"},
    ]
    kept = decide([pick], fixed, pick, "why", subject, SearchConfig(add_to_manifest=False))  # type: ignore[arg-type]
    assert kept["retimed"] is None and kept["dominance"][0]["better_on"] == []  # 100 µs is not < 80
    added = decide([pick], fixed, pick, "why", subject, SearchConfig())  # type: ignore[arg-type]
    assert added["retimed"]["lat_p99_us"] == 50.0 and added["dominance"][0]["better_on"] == ["p99"]
    assert [d["variant"] for d in added["dominance"]] == ["float"]  # never compared with itself
