"""Issue 13 item 5 and issue 12's figure options for demo: each option declared once with one meaning,
the choices listed and checked by the CLI, and the options a user expects wherever they apply
(attribute, batch and compare) reaching the library: the same numbers from each command."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from lam_trt.batch import ResultsLog
from lam_trt.cli import app
from test_batch import export_tiny

runner = CliRunner()
# One name, one meaning; these three keep their own help where the command gives them another shape:
# study's --hr takes the HR images themselves and its --scale is required (also the PSNR border);
# export's --scale picks the zoo model's factor; batch's --format is the results file's (csv, jsonl).
OWN_HELP = {("study", "--hr"), ("study", "--scale"), ("export", "--scale"), ("batch", "--format")}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((40, 36, 3)) * 255).astype(np.uint8)).save(d / "hr.png")
    model = export_tiny(d / "model.onnx")
    other = export_tiny(d / "other.onnx", seed=1)
    return {"model": model, "other": other, "hr": d / "hr.png"}


@pytest.fixture(autouse=True)
def graph_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LAM_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "options-cache"))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def commands() -> dict[str, object]:
    """Every command's click object by its name (cache's subcommands as "cache info", ...)."""
    group = typer.main.get_command(app)
    out = {}
    for name, command in group.commands.items():
        subs = getattr(command, "commands", None)
        out.update({f"{name} {s}": c for s, c in subs.items()} if subs else {name: command})
    return out


def test_one_help_text_per_option_name_across_commands():
    seen: dict[str, tuple[str, str]] = {}
    for name, command in commands().items():
        for param in command.params:
            for opt in (o for o in param.opts if o.startswith("--") and (name, o) not in OWN_HELP):
                first = seen.setdefault(opt, (name, param.help))
                assert param.help == first[1], f"{opt}: {name} says {param.help!r}, {first[0]} {first[1]!r}"
    assert {"--size", "--steps", "--method", "--rule", "--provider", "--threads", "--crop", "--hr"} <= set(seen)


@pytest.mark.parametrize("command", ["attribute", "batch", "compare"])
def test_attribute_batch_and_compare_take_the_same_options_and_list_the_choices(command):
    res = invoke(command, "--help")
    assert res.exit_code == 0, res.output
    for option in ("--size", "--steps", "--sigma", "--kernel-size", "--method", "--rule", "--hr", "--scale",
                   "--provider", "--threads", "--no-crop", "--out", "--json"):
        assert option in res.stdout, option
    for choices in ("[lam|ig|grad|grad-x-input]", "[right|trapezoid|gauss-legendre]", "[auto|tensorrt|cuda|cpu]"):
        assert choices in res.stdout


def test_size_is_the_window_and_lr_size_the_image_everywhere():
    group = commands()
    helps = {name: {o: p.help for p in c.params for o in p.opts} for name, c in group.items()}
    for name in ("attribute", "batch", "compare", "bench", "study"):
        assert helps[name]["--size"].startswith("Window size"), name
    for name in ("bench", "inspect", "export"):
        assert "--lr-size" in helps[name], name
    assert not {"--window-size"} & {o for h in helps.values() for o in h}


@pytest.mark.parametrize("option, value", [("--method", "smoothgrad"), ("--rule", "simpson"), ("--provider", "tpu")])
def test_a_bad_choice_is_one_line_in_the_library_s_words(files, tmp_path, option, value):
    for command in (["attribute", files["model"], files["hr"]], ["batch", files["model"], files["hr"]],
                    ["compare", files["model"], files["other"], files["hr"]]):
        res = invoke(*command, option, value, "--out", tmp_path / "o")
        assert res.exit_code == 2 and res.stderr.startswith("error: unknown ") and f"'{value}'" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_the_options_reach_the_library_alike_in_attribute_batch_and_compare(files, tmp_path):
    """--hr --scale --rule --threads --no-crop: attribute, batch and compare give the same DI for the
    centre window, and it is not the DI of the default options (they were not ignored)."""
    options = ["--hr", "--scale", 2, "--rule", "trapezoid", "--threads", 1, "--no-crop", "--steps", 4, "--size", 8]
    single = invoke("attribute", files["model"], files["hr"], *options, "--out", tmp_path / "a", "--json")
    assert single.exit_code == 0, single.output
    summary = json.loads(single.stdout)
    assert summary["runtime"]["threads"] == 1 and summary["crop"]["applied"] is False
    assert summary["parameters"]["rule"] == "trapezoid" and summary["input_shape"][1:] == [20, 18]

    batch = invoke("batch", files["model"], files["hr"], *options, "--out", tmp_path / "b")
    assert batch.exit_code == 0, batch.output
    (row,) = ResultsLog(tmp_path / "b", "csv").read()
    run = json.loads((tmp_path / "b" / "run.json").read_text())["parameters"]
    assert (run["rule"], run["hr"], run["scale"], run["crop"]) == ("trapezoid", True, 2, False)

    compare = invoke("compare", files["model"], files["other"], files["hr"], *options, "--out", tmp_path / "c",
                     "--json")
    assert compare.exit_code == 0, compare.output
    compared = json.loads(compare.stdout)
    assert compared["parameters"]["rule"] == "trapezoid" and compared["parameters"]["hr"] is True

    di = summary["diffusion_index"]
    assert row["diffusion_index"] == pytest.approx(di, rel=1e-5)
    assert compared["models"][0]["diffusion_index"] == pytest.approx(di, rel=1e-5)
    plain = invoke("attribute", files["model"], files["hr"], "--hr", "--steps", 4, "--size", 8,
                   "--out", tmp_path / "p", "--json")
    assert json.loads(plain.stdout)["diffusion_index"] != pytest.approx(di, rel=1e-5)


@pytest.mark.parametrize("figure, dpi", [("png", 50), ("pdf", 72), ("svg", 72)])
def test_demo_writes_its_figures_in_the_format_and_resolution_asked(tmp_path, figure, dpi):
    out = tmp_path / "demo"
    res = invoke("demo", "--steps", 2, "--format", figure, "--dpi", dpi, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(["attribution.npy", "result.json", f"lam.{figure}",
                                                            f"path.{figure}"])
    written = out / f"lam.{figure}"
    if figure == "png":
        with Image.open(written) as img:
            assert img.format == "PNG" and img.info["dpi"] == pytest.approx((dpi, dpi), abs=0.5)
    elif figure == "pdf":
        assert written.read_bytes().startswith(b"%PDF-")
    else:
        assert ET.parse(written).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_demo_refuses_a_bad_figure_option_before_any_work(tmp_path):
    for option, value in (("--format", "gif"), ("--dpi", 0)):
        res = invoke("demo", option, value, "--out", tmp_path / "bad")
        assert res.exit_code == 2 and option in res.stderr and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("extra", [{}, {"rule": "trapezoid", "hr": True, "scale": 2, "crop": False}])
def test_batch_parameters_reach_ray_workers_whole(extra):
    """Ray workers rebuild the parameters from run.json's dict: every option survives the trip."""
    from lam_trt.batch import BatchParams, WindowSpec

    params = BatchParams(WindowSpec.parse("grid:2"), size=8, steps=3, **extra)
    assert BatchParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
