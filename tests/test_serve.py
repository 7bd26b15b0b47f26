"""``elman serve`` against a running server (started and stopped here, on a free loopback port),
with a model trained on real reviews; answers held equal to ``elman predict`` and ``explain``."""

import base64
import json
import signal
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import elman
from conftest import Running, run_elman


@pytest.fixture(scope="module")
def server(subset_model):
    running = Running(subset_model)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reviews(subset_archive) -> list[str]:
    """Real test reviews (short and long, both classes)."""
    texts = []
    with tarfile.open(subset_archive) as archive:
        for member in archive:
            if "/test/" in member.name and member.isfile() and len(texts) < 12:
                texts.append(archive.extractfile(member).read().decode())
    return texts


def test_health_model_page_and_examples(server, subset_model):
    assert server.get("/health")[1]["status"] == "ok"
    status, model = server.get("/model")
    metrics = json.loads((subset_model / "metrics.json").read_text())
    assert status == 200 and model["classes"] == ["negative", "positive"]
    assert model["metrics"]["test_acc"] == metrics["test_acc"]
    assert model["model"]["hidden_size"] == 16 and model["parameters"] > 0
    status, page = server.get("/")
    assert status == 200 and 'id="heatmap"' in page and "http" not in page.split("<script>")[1]
    status, examples = server.get("/examples")
    labels = {example["label"] for example in examples["examples"]}
    assert status == 200 and labels == {"positive", "negative"}


def test_predict_equals_elman_predict(server, subset_model, reviews):
    status, answer = server.post("/predict", {"texts": reviews})
    assert status == 200
    cli = run_elman("predict", "--model", str(subset_model), "--json", *reviews)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert [p["label"] for p in answer["predictions"]] == [r["label"] for r in expected]
    np.testing.assert_allclose(
        [p["probability"] for p in answer["predictions"]],
        [r["probability"] for r in expected],
        rtol=1e-6,
    )


def test_explain_equals_elman_explain_and_gives_the_states(server, subset_model, reviews, tmp_path):
    text = reviews[0]
    status, reading = server.post("/explain", {"text": text})
    assert status == 200
    cli = run_elman("explain", "--model", str(subset_model), "--out", str(tmp_path), text)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads((tmp_path / "explain.json").read_text())
    assert reading["words"] == expected["words"]
    np.testing.assert_allclose(reading["probabilities"], expected["probabilities"], rtol=1e-6)

    def finite(changes):
        return [np.nan if change is None else change for change in changes]

    np.testing.assert_allclose(
        finite(reading["changes"]), finite(expected["changes"]), rtol=1e-5, atol=1e-7
    )
    # the states, sent as int8 (value = int8 / 127 * scale): the model's own, to 1/254
    assert reading["states"]["shape"] == [len(reading["words"]), 16]
    levels = np.frombuffer(base64.b64decode(reading["states"]["int8"]), dtype=np.int8)
    states = levels.reshape(-1, 16) / 127 * reading["states"]["scale"]
    trained = elman.load(subset_model)
    ids = torch.from_numpy(trained.encode([text]))
    with torch.no_grad():
        exact = trained.model.all_states(ids)[0, -len(reading["words"]) :].numpy()
    np.testing.assert_allclose(states, exact, atol=0.5 / 127 + 1e-6)
    assert states.std() > 0.01  # tanh states, not constants
    assert len(reading["states"]["int8"]) <= 4 * (states.size + 2) / 3  # 1.33 B a state
    # the last state's verdict is the prediction's
    _, predicted = server.post("/predict", {"texts": [text]})
    assert reading["probabilities"][-1] == pytest.approx(
        predicted["predictions"][0]["probability"], rel=1e-5
    )


UNREADABLE = "zzqx qqzx"  # no word the model knows: refused


def test_concurrent_requests_are_gathered_into_batches(server, reviews):
    """Batched, each request still gets its own answer, and one the model cannot read is
    refused alone (every 8th here), whatever batch it joined."""
    before = server.get("/health")[1]

    def texts(i: int) -> list[str]:
        return [UNREADABLE] if i % 8 == 7 else [reviews[i % 12]]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda i: server.post("/predict", {"texts": texts(i)}), range(96)))
    alone = server.post("/predict", {"texts": reviews})[1]["predictions"]
    for i, (status, answer) in enumerate(answers):
        if i % 8 == 7:
            assert status == 422 and "no word in the model's vocabulary" in answer["error"]
        else:
            assert status == 200 and answer["predictions"][0] == pytest.approx(alone[i % 12])
    after = server.get("/health")[1]
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests >= 96 and batches < requests, (requests, batches)


def test_a_batch_is_encoded_at_once_and_an_unreadable_request_refused_alone(subset_model, reviews):
    from elman.inference import load
    from elman.serve import BadRequest, Server, ServeSettings

    trained = load(subset_model)
    server = Server(trained, ServeSettings())
    requests = [reviews[:3], reviews[3:4], reviews[4:9]]
    together = server.run(requests)
    for texts, outputs in zip(requests, together, strict=True):
        np.testing.assert_allclose(outputs, trained.predict_proba(texts), rtol=1e-6)
    mixed = server.run([reviews[:2], [reviews[2], UNREADABLE], reviews[3:4]])
    assert isinstance(mixed[1], BadRequest) and mixed[1].status == 422
    assert str(mixed[1]).startswith("review 2 ")  # (numbered within its own request)
    np.testing.assert_allclose(mixed[0], trained.predict_proba(reviews[:2]), rtol=1e-6)
    np.testing.assert_allclose(mixed[2], trained.predict_proba(reviews[3:4]), rtol=1e-6)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b'["a list"]', 422, 'send a JSON object with "texts"'),
        (b'{"texts": "one string"}', 422, "must be a non-empty list"),
        (b'{"texts": []}', 422, "must be a non-empty list"),
        (b'{"texts": [1, 2]}', 422, "must hold non-empty strings"),
        (b'{"texts": ["   "]}', 422, "must hold non-empty strings"),
        (b'{"texts": ["zzqx qqzx"]}', 422, "no word in the model's vocabulary"),
        (json.dumps({"texts": ["good"] * 100_000}).encode(), 413, "send at most 10,000"),
    ],
)
def test_bad_requests_get_a_json_error_and_the_server_stays_up(server, body, status, message):
    got, answer = server.request("/predict", body)
    assert got == status and message in answer["error"], answer
    assert server.get("/health")[1]["status"] == "ok"


def test_bad_explain_requests(server):
    assert server.post("/explain", {"text": ""})[0] == 422
    assert server.post("/explain", {"texts": ["a list"]})[0] == 422
    assert server.request("/explain", b"\xff")[0] == 400


def test_shutdown_answers_the_requests_in_flight(subset_model, reviews):
    running = Running(subset_model, "--max-texts", "100000", "--max-body-bytes", "100000000")
    answers = []
    slow = threading.Thread(  # ~30,000 long reviews: seconds of work
        target=lambda: answers.append(running.post("/predict", {"texts": reviews * 2_500}))
    )
    slow.start()
    time.sleep(1.0)
    # uvicorn stops accepting, answers what is in flight, then exits by the signal it got
    assert running.stop() in (0, -signal.SIGTERM)
    slow.join(timeout=120)
    assert answers and answers[0][0] == 200 and len(answers[0][1]["predictions"]) == 30_000


def test_a_model_folder_that_does_not_load_stops_serve_at_start(tmp_path):
    started = time.monotonic()
    result = run_elman("serve", "--model", str(tmp_path / "missing"), timeout=60)
    assert result.returncode == 1 and time.monotonic() - started < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("elman: error:"), result.stderr


def test_listening_beyond_loopback_warns(subset_model):
    running = Running(subset_model, "--host", "0.0.0.0")
    try:
        assert running.get("/health")[0] == 200
    finally:
        running.stop()
    assert "reachable from the network" in running.process.stderr.read()


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """A 5 MB body: the answer comes from its declared length, before the body is sent (as
    HTTP has it); the server stays up."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(5_000_000))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert "over 4,000,000 bytes" in json.loads(response.read())["error"]
    connection.close()
    assert server.get("/health")[1]["status"] == "ok"


@pytest.fixture(scope="module")
def series_model(tmp_path_factory) -> Path:
    """A small series model (UCR layout, one epoch): enough to check what the server takes."""
    from elman.cli import main

    root = tmp_path_factory.mktemp("series")
    lines = [
        "\t".join([str(i % 2), *(f"{(i % 2) * j / 8:.3f}" for j in range(8))]) for i in range(40)
    ]
    (root / "Steps_TRAIN.tsv").write_text("\n".join(lines) + "\n")
    out = root / "model"
    args = ["train", "series", "--data", str(root / "Steps_TRAIN.tsv"), "--out", str(out)]
    assert main([*args, "--epochs", "1", "--batch-size", "8", "--no-progress"]) in (0, None)
    return out


@pytest.mark.parametrize(
    "values, words",
    [
        ([[0.1, float("inf"), 0.3]], "finite float32"),
        ([[0.1, -float("inf")]], "finite float32"),
        ([[0.1, 1e39]], "finite float32"),  # beyond float32
        ([[float("nan"), float("nan")]], "series 1 has no values"),
        ([[0.1, 0.2], [float("nan"), float("nan")]], "series 2 has no values"),
        ([[]], "must be N series"),
    ],
)
def test_series_the_command_line_refuses_are_refused_over_http(
    series_model, tmp_path, values, words
):
    """The server and ``elman predict`` agree: what one refuses, the other refuses too."""
    from elman.inference import load
    from elman.serve import BadRequest, Server, ServeSettings

    server = Server(load(series_model), ServeSettings())
    with pytest.raises(BadRequest, match=words) as refused:
        server.inputs(json.dumps({"values": values}).encode())
    assert refused.value.status == 422
    rows = ["\t".join(["0", *(str(v) for v in series)]) for series in values]
    (tmp_path / "bad.tsv").write_text("\n".join(rows) + "\n")
    cli = run_elman("predict", "--model", str(series_model), str(tmp_path / "bad.tsv"))
    assert cli.returncode != 0 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr


def test_deeply_nested_json_is_a_client_error(server):
    status, answer = server.request("/predict", b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nests too deeply" in answer["error"]
    assert server.get("/health")[1]["status"] == "ok"


def test_model_info_names_no_server_path(subset_model):
    from dataclasses import replace

    from elman.inference import load
    from elman.serve import model_info

    trained = load(subset_model)
    trained.config = replace(
        trained.config, train=replace(trained.config.train, encoded="/srv/secret/encoded")
    )
    assert "/srv/secret" not in json.dumps(model_info(trained))


def test_port_zero_is_told_and_a_client_that_goes_away_leaves_no_traceback(subset_model):
    import socket
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "elman", "serve", "--model", str(subset_model), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()  # "Serving ... on http://127.0.0.1:PORT (Ctrl-C stops)"
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"texts": ["a go'
            )  # ... and gone, 984 bytes short
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"200 OK" in client.recv(1000)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert "Traceback" not in process.stderr.read()
