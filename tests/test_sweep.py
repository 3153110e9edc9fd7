"""``lstsd sweep``: grid specs, the runs it makes (and reuses), its table and plot, and clear errors."""

from __future__ import annotations

import pytest

from lstsd.harness import cli
from lstsd.harness.errors import ConfigError
from lstsd.harness.sweep import grid_points, parse_axis, point_label

TINY = ["dataset=digits", "train_subset=120", "model_args.depth=8", "model_args.width=4", "epochs=2",
        "eval_every=1", "batch_size=40", "progress=none", "method_args.generation_epochs=1"]


@pytest.mark.parametrize("spec,word", [
    ("generation_epochs", "has no '='"), ("=1,2", "is not a key"), ("lr=", "has no values"),
    ("a,b=1:2,3", "has 1 value"), ("lr=0.1,0.1", "repeats a value"), ("lr=[1", "cannot read"),
    ("bad key=1", "is not a key"),
])
def test_bad_grid_specs_are_refused_with_the_fix(spec, word):
    with pytest.raises(ConfigError, match=word):
        parse_axis(spec)


def test_linked_keys_move_together_and_axes_multiply():
    axes = [parse_axis("method_args.lambda_long,method_args.lambda_short=0:0,2.4:4.0"), parse_axis("seed=0,1,2")]
    points = grid_points(axes)
    assert len(points) == 6 and points[1] == (("method_args.lambda_long", 0), ("method_args.lambda_short", 0),
                                              ("seed", 1))
    assert point_label(points[-1]) == "lambda_long2.4-lambda_short4.0-seed2"


def test_sweep_runs_every_point_and_seed_then_reuses_them(tmp_path):
    lines: list[str] = []
    kwargs = dict(grid=["method_args.generation_epochs=1,2"], seeds=[0, 1], overrides=TINY + [
        "method_args.generation_epochs=1"], out_dir=str(tmp_path / "s"), log=lines.append)
    kwargs["overrides"] = [o for o in TINY if not o.startswith("method_args.generation")]
    runs, text = cli.sweep("sweep-generation-epochs", **kwargs)
    assert [r.name for r in runs] == [f"lstsd-generation_epochs{e}-seed{s}" for e in (1, 2) for s in (0, 1)]
    assert all((r / "results.json").is_file() for r in runs)
    assert "| generation_epochs | test accuracy (%) |" in text and text.count("(n = 2)") == 2
    plot = tmp_path / "s" / "plots" / "sweep_generation_epochs.png"
    assert plot.is_file() and plot.stat().st_size > 1000
    lines.clear()
    again, text_again = cli.sweep("sweep-generation-epochs", **kwargs)       # nothing is trained again
    assert again == runs and sum("finished earlier, reused" in m for m in lines) == 4
    assert text_again.split("Plot:")[0] == text.split("Plot:")[0]


def test_a_preset_without_a_grid_needs_one(tmp_path):
    with pytest.raises(ConfigError, match="no sweep grid"):
        cli.sweep("quick", out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown method"):
        cli.sweep("quick", method="lstdd", grid=["lr=0.1"], out_dir=str(tmp_path))


def test_a_bad_value_in_the_grid_is_refused_before_anything_trains(tmp_path):
    with pytest.raises(ValueError, match="generation_epochs"):
        cli.sweep("sweep-generation-epochs", grid=["method_args.generation_epochs=2,0"], seeds=[0],
                  overrides=[o for o in TINY if not o.startswith("method_args")], out_dir=str(tmp_path / "s"))
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_the_cli_prints_the_table(tmp_path, capsys):
    code = cli.main(["sweep", "--preset", "sweep-lambda-scale", "--grid",
                     "method_args.lambda_long,method_args.lambda_short=0:0,2.4:4.0", "--seeds", "0",
                     "--out", str(tmp_path / "s"), "--set", *TINY])
    out = capsys.readouterr().out
    assert code == 0 and "| lambda_long | lambda_short | test accuracy (%) |" in out and "(n = 1)" in out
    assert cli.main(["sweep", "--preset", "sweep-lambda-scale", "--grid", "lr", "--out", str(tmp_path)]) == 2
    assert "has no '='" in capsys.readouterr().err


def test_compare_and_sweep_share_one_plan_builder(tmp_path):
    """Each arm × seed in order; later settings win: preset config, the preset's method_args of the
    method, shared --set, the method's own --set, then the arm's (a grid point)."""
    preset = {"config": {"dataset": "digits", "model": "resnet", "lr": 0.2, "method_args": {"temperature": 3.0}},
              "method_args": {"lstsd": {"generation_epochs": 2, "lambda_long": 1.0}}}
    shared, per_method = cli._split_overrides(["lr=0.05", "method_args.lstsd.lambda_long=2.0"])
    arms = [cli.PlanArm("vanilla", "vanilla"),
            cli.PlanArm("lstsd", "lstsd-generation_epochs3", ("method_args.generation_epochs=3",))]
    plan = cli.build_plan(preset, arms, [0, 1], tmp_path, shared, per_method)
    assert [(c.name, c.seed, c.run_dir) for c in plan] == [
        (f"{arm.name}-seed{s}", s, str(tmp_path / f"{arm.name}-seed{s}")) for arm in arms for s in (0, 1)]
    assert all(c.lr == 0.05 for c in plan) and plan[0].method_args == {"temperature": 3.0}
    assert plan[2].method_args == {"temperature": 3.0, "generation_epochs": 3, "lambda_long": 2.0}
