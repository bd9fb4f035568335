"""`lam-trt serve`'s HTTP API through Starlette's TestClient, on the bundled demo model: the numbers
equal a direct Attributor call and the CLI's JSON, bad requests get the CLI's one-line message, and
the server keeps its promises (one attribution at a time per model, only its own files, cleanup)."""
from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="needs the serve extra: pip install 'lam-trt[serve]'")
pytest.importorskip("multipart", reason="needs the serve extra: pip install 'lam-trt[serve]'")
from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from lam_trt.attributor import Attributor  # noqa: E402
from lam_trt.cli import app as cli_app  # noqa: E402
from lam_trt.commands.demo import demo_files  # noqa: E402
from lam_trt.export.model_report import inspect_model  # noqa: E402
from lam_trt.serve.app import create_app  # noqa: E402
from lam_trt.serve.models import load_models  # noqa: E402
from lam_trt.serve.uploads import Limits  # noqa: E402

MODEL, IMAGE, INFO = demo_files()
NAME = MODEL.stem
BASE = "http://127.0.0.1:8000"
FAST = {"steps": "8", "rule": "trapezoid"}  # a short integral: these tests check plumbing, not LAM
WINDOW = (100, 90)


@pytest.fixture(autouse=True)
def graph_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LAM_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "graph-cache"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAM_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "graph-cache"))
        return load_models([MODEL], "cpu")


@pytest.fixture
def client(models):
    with TestClient(create_app(models, {IMAGE.name: IMAGE}, Limits(upload_bytes=2**20)), base_url=BASE) as c:
        yield c


def post(client, path="/api/attribute", image=None, name="lr.png", **fields):
    form = {"model": NAME, "x": str(WINDOW[0]), "y": str(WINDOW[1]), **FAST, **fields}
    data = IMAGE.read_bytes() if image is None else image
    return client.post(path, files={"image": (name, data, "image/png")}, data=form)


def cli(*args: str):
    return CliRunner().invoke(cli_app, [str(a) for a in args])


def cli_error(*args: str) -> str:
    """The one line `lam-trt` prints for bad input, without its "error: " prefix."""
    res = cli(*args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0][len("error: "):]


def test_models_lists_scale_channels_and_receptive_field(client):
    listed = client.get("/api/models").json()
    report = inspect_model(MODEL)
    assert [m["name"] for m in listed] == [NAME]
    assert listed[0]["scale"] == INFO["scale"] == report["scale"]
    assert listed[0]["channels"] == report["channels"]
    assert listed[0]["receptive_field"] == report["receptive_field"]


def test_attribute_equals_a_direct_attributor_call_and_the_cli_json(client, tmp_path):
    res = post(client)
    assert res.status_code == 200, res.text
    served = res.json()
    direct = Attributor(MODEL, provider="cpu").attribute(IMAGE, window=WINDOW, size=16, steps=8, rule="trapezoid")
    assert served["diffusion_index"] == pytest.approx(direct.diffusion_index, rel=1e-9, abs=1e-12)
    assert served["gini"] == pytest.approx(direct.gini, rel=1e-9)
    assert served["completeness_gap"] == pytest.approx(direct.completeness_gap, rel=1e-6, abs=1e-9)
    attribution = np.load(io.BytesIO(client.get(served["urls"]["attribution.npy"]).content))
    np.testing.assert_allclose(attribution, direct.attribution, rtol=1e-6, atol=1e-9)

    out = tmp_path / "cli"
    res = cli("attribute", MODEL, IMAGE, "--window", *map(str, WINDOW), "--steps", "8", "--rule", "trapezoid",
              "--provider", "cpu", "--out", out, "--json")
    assert res.exit_code == 0, res.output
    expected = json.loads(res.stdout)
    assert set(served) - set(expected) == {"urls", "panels"}  # the CLI's JSON plus the pictures' URLs
    assert set(expected) <= set(served)
    for key in ("method", "window", "scale", "parameters", "model", "crop", "input_shape", "output_shape"):
        assert served[key] == expected[key], key
    assert served["diffusion_index"] == pytest.approx(expected["diffusion_index"], rel=1e-9)
    assert json.loads(client.get(served["urls"]["result.json"]).content)["diffusion_index"] == \
        served["diffusion_index"]


def test_a_second_window_on_the_same_image_reuses_the_warm_graph(client):
    post(client, x="20", y="30")  # warms this size, if no earlier test did
    first = post(client, x="20", y="30").json()
    second = post(client, x="150", y="120").json()
    assert first["window"] != second["window"] and first["diffusion_index"] != second["diffusion_index"]
    for served in (first, second):  # neither built nor loaded again: the warm runner, kept in memory
        assert served["runtime"]["graph_source"] == "memory" and served["timings_seconds"]["graph"] == 0.0


def test_result_files_pictures_and_zip(client):
    served = post(client).json()
    names = {"attribution.npy", "result.json", "lam.png", "path.png"}
    assert set(served["urls"]) == names | {"zip"}
    for url in [served["urls"][n] for n in ("lam.png", "path.png")] + [p["url"] for p in served["panels"]]:
        res = client.get(url)
        assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    panels = {p["name"]: Image.open(io.BytesIO(client.get(p["url"]).content)) for p in served["panels"]}
    assert set(panels) == {"input", "saliency", "blend", "kde", "output"}
    h, w = served["output_shape"][1:]
    assert all(p.size == (w, h) for p in panels.values())
    with zipfile.ZipFile(io.BytesIO(client.get(served["urls"]["zip"]).content)) as zf:
        assert set(zf.namelist()) == names


def test_job_reports_progress_then_the_same_result(client):
    res = post(client, "/api/jobs")
    assert res.status_code == 202, res.text
    job = res.json()
    assert job["state"] in ("queued", "preparing") and job["total"] == 9  # trapezoid: steps + 1 points
    seen = set()
    while job["state"] not in ("done", "error", "cancelled"):
        job = client.get(f"/api/jobs/{job['id']}").json()
        seen.add(job["state"])
    assert job["state"] == "done" and job["done"] == job["total"] == 9, job
    assert job["metrics"]["diffusion_index"] == job["result"]["diffusion_index"]
    assert job["panels"] == job["result"]["panels"] and len(job["panels"]) == 5
    assert job["result"]["window"] == {"x": WINDOW[0], "y": WINDOW[1], "size": 16}


BAD = {  # field overrides or upload -> the CLI arguments that give the same message
    "not an image": ({"image": b"hello, not a picture"}, ["--window", "100", "90"]),
    "window outside": ({"x": "250"}, ["--window", "250", "90"]),
    "unknown method": ({"method": "smoothgrad"}, ["--window", "100", "90", "--method", "smoothgrad"]),
    "unknown rule": ({"rule": "simpson"}, ["--window", "100", "90", "--rule", "simpson"]),
    "zero steps": ({"steps": "0"}, ["--window", "100", "90", "--steps", "0"]),
    "zero size": ({"size": "0"}, ["--window", "100", "90", "--size", "0"]),
    "bad sigma": ({"sigma": "-1"}, ["--window", "100", "90", "--sigma", "-1"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_gets_the_cli_message_and_the_server_keeps_going(client, tmp_path, monkeypatch, case):
    fields, cli_args = BAD[case]
    fields = dict(fields)
    image = fields.pop("image", None)
    res = post(client, image=image, name="lr.png", **fields)
    assert res.status_code == 400, res.text
    message = res.json()["error"]
    monkeypatch.chdir(tmp_path)  # the CLI names the file as given: the same base name as the upload
    Path("lr.png").write_bytes(IMAGE.read_bytes() if image is None else image)
    expected_steps = [] if "--steps" in cli_args else ["--steps", "8"]
    assert message == cli_error("attribute", MODEL, "lr.png", *cli_args, *expected_steps, "--out", "o")
    assert client.get("/api/models").status_code == 200  # the server is still there


@pytest.mark.parametrize("fields, status, needle", [
    ({"model": "../../etc/passwd"}, 400, "unknown model"),
    ({"model": ""}, 400, "needs a 'model'"),
    ({"x": "ten"}, 400, "x must be an integer"),
    ({"steps": "5000"}, 400, "at most 1024"),
], ids=["path as model", "no model", "x not a number", "too many steps"])
def test_bad_fields(client, fields, status, needle):
    res = post(client, **fields)
    assert res.status_code == status and needle in res.json()["error"], res.text


def test_missing_image_too_large_upload_and_too_many_pixels(client):
    res = client.post("/api/attribute", data={"model": NAME, "x": "1", "y": "1"})
    assert res.status_code == 400 and "image" in res.json()["error"]
    big = post(client, image=b"\0" * (2**20 + 1))
    assert big.status_code == 413 and "limit" in big.json()["error"]
    buffer = io.BytesIO()
    Image.new("RGB", (1100, 1000)).save(buffer, format="PNG")
    res = post(client, image=buffer.getvalue(), name="huge.png")
    assert res.status_code == 400 and "huge.png is 1100x1000 pixels" in res.json()["error"]
    assert post(client).status_code == 200


def test_hr_upload_is_downscaled_by_the_model_scale(client, tmp_path):
    hr = Image.open(IMAGE).resize((256, 256), Image.BICUBIC)
    buffer = io.BytesIO()
    hr.save(buffer, format="PNG")
    hr.save(tmp_path / "hr.png")
    served = post(client, image=buffer.getvalue(), name="hr.png", hr="1").json()
    direct = Attributor(MODEL, provider="cpu").attribute(tmp_path / "hr.png", window=WINDOW, steps=8,
                                                         rule="trapezoid", hr=True, scale=4)
    assert served["input_shape"] == [3, 64, 64]
    assert served["diffusion_index"] == pytest.approx(direct.diffusion_index, rel=1e-9)


def test_one_attribution_at_a_time_per_model_others_queued_and_cancellable(client, models):
    attributor = models[NAME].attributor
    release, active, peak = threading.Event(), [0], [0]
    real = attributor.attribute

    def gated(*args, **kwargs):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            release.wait(timeout=60)
            return real(*args, **kwargs)
        finally:
            active[0] -= 1

    attributor.attribute = gated
    try:
        first, second, third = (post(client, "/api/jobs").json() for _ in range(3))
        queued = client.get(f"/api/jobs/{second['id']}").json()
        assert queued["state"] == "queued" and queued["ahead"] == 1
        assert client.delete(f"/api/jobs/{third['id']}").json()["state"] == "cancelled"
        release.set()
        states = {}
        for job in (first, second, third):
            while job["state"] not in ("done", "error", "cancelled"):
                job = client.get(f"/api/jobs/{job['id']}").json()
            states[job["id"]] = job["state"]
    finally:
        release.set()
        del attributor.attribute
    assert [states[j["id"]] for j in (first, second, third)] == ["done", "done", "cancelled"]
    assert peak[0] == 1


def test_results_are_removed_when_the_server_stops(models):
    app = create_app(models, {})
    with TestClient(app, base_url=BASE) as c:
        served = post(c).json()
        root = app.state.store.root
        assert Path(served["files"]["result.json"]).is_file() and root.is_dir()
    assert not root.exists()


@pytest.mark.parametrize("path", ["/images/..%2Fdemo_x4.onnx", "/images/nothing.png",
                                  "/results/0000/result/result.json", "/results/x/../../etc/passwd"])
def test_only_its_own_files_are_served(client, path):
    assert client.get(path).status_code == 404


def test_picked_images_and_page_are_served_offline(client):
    assert client.get(f"/images/{IMAGE.name}").content == IMAGE.read_bytes()
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    static = Path(__file__).resolve().parents[1] / "lam_trt" / "serve" / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = client.get("/" if name == "index.html" else f"/static/{name}").text
        assert text == (static / name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{name} refers elsewhere"


@pytest.mark.parametrize("headers", [{"host": "attacker.example"}, {"origin": "http://attacker.example"}],
                         ids=["DNS rebinding", "cross-origin post"])
def test_other_sites_are_refused(client, headers):
    res = client.post("/api/attribute", headers=headers, data={"model": NAME})
    assert res.status_code == 403


def test_serve_command_refuses_bad_arguments_in_one_line(tmp_path):
    assert "at least one ONNX model" in cli_error("serve")
    missing = tmp_path / "none.onnx"
    assert cli_error("serve", missing) == cli_error("attribute", missing, IMAGE, "--window", "0", "0")
    assert "not a folder" in cli_error("serve", MODEL, "--images", tmp_path / "nope")
    assert "--port" in cli_error("serve", MODEL, "--port", "70000")
