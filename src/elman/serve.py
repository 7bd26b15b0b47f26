"""``elman serve``: a saved model behind HTTP, and a page that shows it reading.

Starlette (the ASGI toolkit FastAPI is built on) served by uvicorn. The routes:

    GET  /          the page (``elman/web/index.html``: no CDN, works offline)
    GET  /health    {"status": "ok"}
    GET  /model     the model's settings, classes and test scores (metrics.json)
    GET  /examples  a few samples of the test split ({"text"} or {"values"}, and "label"),
                    when the model's data is at hand; else why not ("reason")
    POST /predict   {"texts": [...]} (text models), {"values": [[[...]]]} (numeric, N×T×F),
                    or a WAV body (speech) -> {"predictions": [{"label", "probability"}]}
    POST /explain   one input: {"text": "..."}, {"values": [[...]]} (T×F), a WAV (speech) or
                    .npy (series) body -> the reading (``elman.analysis.explain``): steps,
                    P(class) after each, changes, states (T×W as int8, ``compact``), how long
                    each unit holds its value, each step's influence on the end, notes
    POST /match     {"pattern": [[...]] (L×U), "units": [U ids]} -> the nearest spans of those
                    units' states in the model's test data (``elman.analysis.matches``)

Concurrent /predict requests are gathered into batches (``Batcher``): each request's body is
parsed and checked on its own, then everything that queued while the last batch ran is encoded
in ONE call (a single text costs the compiled tokenizer about as much as dozens in one call) and
read by the model in one pass, off the event loop (at most ``max_batch`` rows). A bad request
gets a 4xx whose JSON ``error`` says what was wrong and what to do; the server stays up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from elman.data.series import FINITE_ONLY
from elman.data.text import RESERVED
from elman.errors import UserError

SMALL_BODY = 32_000  # bytes: requests this small are parsed on the event loop
PRIVATE_SETTINGS = ("encoded",)  # training settings that name the server's files


@dataclass
class ServeSettings:
    max_body_bytes: int = 4_000_000  # larger bodies get 413
    max_texts: int = 10_000  # inputs per request
    max_batch: int = 2_000  # rows the model reads at once
    # Seconds a batch waits for more requests beyond those that queued while the model ran
    # (which always join it): 0, as waiting only delays a lone request.
    wait: float = 0.0


class BadRequest(Exception):
    """A request the server refuses: its status and the message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Batcher:
    """Gathers concurrent requests into batches for ``run``, one batch at a time, in a worker
    thread. ``run(items)`` answers a list of requests' inputs (each ``len``-able: its rows)
    with one result per request: its output rows, or the exception it alone gets."""

    def __init__(self, run: Callable[[list], list], max_batch: int, wait: float):
        self.run, self.max_batch, self.wait = run, max_batch, wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.counts = {"requests": 0, "batches": 0}  # how well requests were gathered

    async def submit(self, item) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            count, deadline = len(waiting[0][0]), loop.time() + self.wait
            while count < self.max_batch:
                if not self.queue.empty():  # what arrived while the last batch ran
                    waiting.append(self.queue.get_nowait())
                elif (left := deadline - loop.time()) > 0:
                    try:
                        waiting.append(await asyncio.wait_for(self.queue.get(), left))
                    except TimeoutError:
                        break
                else:
                    break
                count += len(waiting[-1][0])
            self.counts["requests"] += len(waiting)
            self.counts["batches"] += 1
            try:
                results = await asyncio.to_thread(self.run, [item for item, _ in waiting])
            except Exception as error:  # the model failed: every waiting request hears it
                results = [error] * len(waiting)
            for result, (_, future) in zip(results, waiting, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def model_info(trained) -> dict:
    """What ``GET /model`` says: source, classes, sizes, training and test scores."""
    config = asdict(trained.config)
    scores = {k: v for k, v in trained.metrics.items() if k != "report"}
    # Where the training data lay on the machine that trained it is nobody's business here.
    train = {k: v for k, v in config["train"].items() if k not in PRIVATE_SETTINGS}
    from elman.data import SOURCES

    reads = "recording" if SOURCES[trained.config.source].upload is not None else "values"
    return {
        "source": trained.config.source,
        "input": "text" if trained.config.reads_text else reads,  # what the page asks for
        "classes": trained.config.classes,
        "task": trained.model.task,
        "model": config["model"],
        "train": train,
        "metrics": scores,
        "parameters": sum(p.numel() for p in trained.model.parameters()),
    }


class Server:
    """The routes' work, apart from HTTP: inputs checked and encoded, outputs as JSON."""

    def __init__(self, trained, settings: ServeSettings) -> None:
        self.trained, self.settings = trained, settings
        self.reads_text = trained.config.reads_text
        from elman.data import SOURCES

        self.source = SOURCES[trained.config.source]
        self.forecasts = trained.model.task == "forecast"
        self.batcher = Batcher(self.run, settings.max_batch, settings.wait)
        self.examples: dict | None = None
        self._test: tuple | Exception | None = None  # the test split's (x, y), read once
        self._index = None  # its states (elman.analysis.matches.StateIndex), built once
        self._reading_test = threading.RLock()
        # One model call at a time: numba's parallel kernels must not be entered from two
        # threads at once (the batcher, /explain and the index being built each run on one).
        self.model_lock = threading.Lock()

    def run(self, items: list[list[str] | np.ndarray]) -> list[np.ndarray | Exception]:
        """The model's outputs for a batch of requests' inputs (texts, or rows of values),
        each request's in turn: texts are encoded all at once (if one text cannot be read,
        each request is encoded alone, so that only its own request is refused)."""
        model = self.trained.forecast if self.forecasts else self.trained.probabilities
        with self.model_lock:
            if not self.reads_text:
                outputs = model(np.concatenate(items))
            else:
                try:
                    texts = [text for texts in items for text in texts]
                    outputs = model(self.trained.encode(texts))
                except UserError:
                    return [self._alone(texts) for texts in items]
        ends = np.cumsum([len(item) for item in items])
        return [outputs[end - len(item) : end] for item, end in zip(items, ends, strict=True)]

    def _alone(self, texts: list[str]) -> np.ndarray | BadRequest:
        try:
            return self.trained.probabilities(self.trained.encode(texts))
        except UserError as error:
            return BadRequest(422, str(error))

    def inputs(self, body: bytes) -> list[str] | np.ndarray:
        """The request's inputs, checked: its texts (text models), or its rows of values
        (N, T, F); a recording's rows (speech)."""
        if self.source.upload is not None:  # a file as the body (speech: a WAV recording)
            if not body:
                raise BadRequest(422, "send the file (a WAV recording) as the request body")
            try:
                return self.source.upload(self.trained.fitted, body)
            except UserError as error:
                raise BadRequest(422, str(error)) from None
            except (RuntimeError, ValueError, OSError) as error:
                raise BadRequest(
                    422, f"the body is not a recording this model can read ({error})"
                ) from None
        payload = parse_json(body)
        key = "texts" if self.reads_text else "values"
        if not isinstance(payload, dict) or key not in payload:
            raise BadRequest(422, f'send a JSON object with "{key}": a list of inputs')
        items = payload[key]
        if not isinstance(items, list) or not items:
            raise BadRequest(422, f'"{key}" must be a non-empty list')
        if len(items) > self.settings.max_texts:
            raise BadRequest(
                413, f"{len(items):,} inputs in one request; send at most "
                f"{self.settings.max_texts:,} per request"
            )  # fmt: skip
        if self.reads_text:
            if not all(isinstance(text, str) and text.strip() for text in items):
                raise BadRequest(422, '"texts" must hold non-empty strings')
            return items  # (encoded with the batch it joins: Server.run)
        return self._values(items)

    def _values(self, items: list) -> np.ndarray:
        try:
            with np.errstate(over="ignore"):  # (beyond float32: inf, refused below)
                values = np.asarray(items, dtype=np.float32)
        except (TypeError, ValueError):
            raise BadRequest(
                422, '"values" must be numbers: a list of series, each a list of steps'
            ) from None
        if values.ndim == 2:  # one feature: steps given as plain numbers
            values = values[..., None]
        width = self.trained.config.model.input_size
        if values.ndim != 3 or values.shape[2] != width or values.shape[1] == 0:
            raise BadRequest(
                422, f'"values" must be N series × T steps × {width} features, got shape '
                f"{list(values.shape)}"
            )  # fmt: skip
        # As elman predict reads a file: inf (or beyond float32) refused, NaN a missing value.
        if np.isinf(values).any():
            raise BadRequest(422, f'"values": {FINITE_ONLY}')
        empty = np.isnan(values).all(axis=(1, 2))
        if empty.any():
            raise BadRequest(
                422, f'"values": series {int(np.argmax(empty)) + 1} has no values: give every '
                "series at least one"
            )  # fmt: skip
        return values

    def answer(self, outputs: np.ndarray) -> dict:
        from elman.inference import to_predictions

        if self.forecasts:  # the next value of each series, (N, F)
            return {"forecasts": outputs.tolist()}
        predictions = to_predictions(outputs, self.trained.config.classes)
        return {"predictions": [asdict(p) for p in predictions]}

    def explain(self, body: bytes, content_type: str = "application/json") -> dict:
        """One input read step by step (see the module docstring), as JSON."""
        from elman.analysis.explain import read_text, read_values

        try:
            if self.reads_text:
                payload = parse_json(body)
                text = payload.get("text") if isinstance(payload, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise BadRequest(422, 'send a JSON object with "text": one non-empty text')
                with self.model_lock:
                    reading = read_text(self.trained, text)
            else:
                values = self._one_series(body, content_type)
                with self.model_lock:
                    reading = read_values(self.trained, values)
        except UserError as error:
            raise BadRequest(422, str(error)) from None
        return reading_json(reading, self.trained.config.classes)

    def _one_series(self, body: bytes, content_type: str) -> np.ndarray:
        """The one series (T, F) of an /explain request: JSON {"values": steps}, a recording
        (speech) or a .npy file (series) as the body."""
        if content_type.startswith("application/json"):
            payload = parse_json(body)
            if not isinstance(payload, dict) or "values" not in payload:
                raise BadRequest(422, 'send a JSON object with "values": the steps of one series')
            return self._values([payload["values"]])[0]
        if self.source.upload is not None:
            return self.inputs(body)[0]
        if not body.startswith(b"\x93NUMPY"):
            raise BadRequest(422, 'send JSON {"values": [...]} or a .npy file of one series')
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError) as error:
            raise BadRequest(422, f"the .npy file cannot be read ({error})") from None
        if array.ndim not in (1, 2) or array.dtype.kind not in "iuf":
            raise BadRequest(
                422, f"the .npy file holds {array.dtype} of shape {list(array.shape)}: give one "
                "series of numbers, (steps,) or (steps, features)"
            )  # fmt: skip
        return self._values([array.tolist()])[0]

    def test_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The model's test split (x, y), read once; None when its data is not on this
        machine (``why_not`` says why)."""
        with self._reading_test:
            if self._test is None:
                try:
                    split = self.source.evaluation(self.trained.fitted, None, lambda _: None)
                    self._test = (split.x, split.y)
                except (UserError, OSError) as error:
                    self._test = error
        return None if isinstance(self._test, Exception) else self._test

    @property
    def why_not(self) -> str:
        return f"the model's test data is not on this machine ({self._test})"

    def find_examples(self, count: int = 6) -> dict:
        """A few test samples, as many of each class as can be: {"examples": [...]}, with
        "reason" when there are none."""
        from elman.analysis.matches import balanced

        if self.source.examples is not None:  # (text kept as written: IMDB's archive)
            found = self.source.examples(self.trained.fitted, count)
            return {"examples": found} if found else {"examples": [], "reason": "none at hand"}
        test = self.test_data()
        if test is None:
            return {"examples": [], "reason": self.why_not}
        x, y = test
        classes, examples = self.trained.config.classes, []
        rows = range(min(count, len(x))) if self.forecasts else balanced(y, count)
        for row in rows:
            label = "a test series" if self.forecasts else classes[int(y[row])]
            if self.reads_text:
                words = [self.trained.vocabulary.words[i] for i in x[row] if i >= len(RESERVED)]
                examples.append({"text": " ".join(words), "label": label})
            else:
                steps = x[row][~np.isnan(x[row]).all(-1)]
                examples.append({"values": np.round(steps, 5).tolist(), "label": label})
        return {"examples": examples}

    def state_index(self):
        """The states of the test data (``StateIndex``), built once; None without test data.
        The page asks for its examples first: the index is built then, before any search."""
        from elman.analysis.matches import StateIndex

        with self._reading_test:
            if self._index is None and not self.forecasts and self.test_data() is not None:
                self._index = StateIndex.build(self.trained, *self._test, guard=self.model_lock)
        return self._index

    def match(self, body: bytes) -> dict:
        """The spans of the test data nearest to a pattern of states (POST /match)."""
        payload = parse_json(body)
        pattern, units = (payload.get(k) for k in ("pattern", "units"))
        try:
            pattern = np.asarray(pattern, dtype=np.float32)
            units = [int(u) for u in units]
        except (TypeError, ValueError):
            pattern, units = np.zeros(0), []
        if pattern.ndim != 2 or not units or pattern.shape[1] != len(units) or len(pattern) > 50:
            raise BadRequest(
                422, 'send {"pattern": [[...]], "units": [...]}: up to 50 steps of the states '
                "of the units listed, one number per unit a step"
            )  # fmt: skip
        if self.state_index() is None:
            raise BadRequest(409, f"nothing to search: {self.why_not}")
        if max(units) >= self._index.states.shape[2] or min(units) < 0:
            raise BadRequest(422, f"units are 0 to {self._index.states.shape[2] - 1}")
        started = time.perf_counter()
        found = self._index.search(pattern, units)
        seconds = time.perf_counter() - started
        return {"matches": found, "samples": len(self._index.labels), "seconds": seconds}


def compact(states: np.ndarray) -> dict:
    """States (T, W) as int8 in base64 (a 20th of their JSON): value = int8 / 127 * scale."""
    scale = max(1.0, float(np.abs(states).max(initial=0)))
    levels = np.round(np.clip(states / scale, -1, 1) * 127).astype(np.int8)
    return {
        "shape": list(states.shape),
        "scale": scale,
        "int8": base64.b64encode(levels.tobytes()).decode(),
    }


def reading_json(reading, classes: list[str]) -> dict:
    """What POST /explain answers for a ``Reading``."""
    from elman.analysis.explain import holding_steps, prediction_of

    states = np.asarray(reading.states, dtype=np.float32).reshape(len(reading.words), -1)
    return {
        **reading.record(),
        "prediction": prediction_of(reading, classes),
        "states": compact(states) if states.size else None,
        "holding": np.round(holding_steps(states), 2).tolist() if states.size else [],
        "influence": [float(f"{value:.4g}") for value in reading.influence],
        "unknown": reading.unknown,
        "inputs": np.round(np.asarray(reading.inputs, dtype=np.float32), 4).tolist(),
        "forecasts": reading.forecasts,
    }


def parse_json(body: bytes):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "the body is not UTF-8: send UTF-8 encoded JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(400, f"the body is not valid JSON ({error})") from None
    except RecursionError:
        raise BadRequest(400, "the JSON nests too deeply: send a flat object") from None


async def read_body(request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is known to be over ``limit`` bytes:
    from its declared length before reading, else while reading."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body is over {limit:,} bytes")
    from starlette.requests import ClientDisconnect

    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"the body is over {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # (nobody to answer: no traceback in the log either)
        raise BadRequest(400, "the client went away before sending the whole body") from None
    return b"".join(chunks)


async def refused(request, error: BadRequest):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": str(error)}, status_code=error.status)


async def failed(request, error: Exception):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": f"the server failed: {error!r}"}, status_code=500)


def create_app(folder: str | Path, settings: ServeSettings | None = None):
    """The ASGI application serving the model saved in ``folder`` (loaded now: a folder that
    does not load raises its UserError here, before any request)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from elman.inference import load

    settings = settings or ServeSettings()
    server = Server(load(folder), settings)
    page = (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")

    async def body_of(request: Request) -> bytes:
        return await read_body(request, settings.max_body_bytes)

    async def predict(request: Request) -> JSONResponse:
        body = await body_of(request)
        if len(body) < SMALL_BODY:  # a few reviews: parsed here, quicker than a thread hop
            inputs = server.inputs(body)
        else:
            inputs = await asyncio.to_thread(server.inputs, body)
        return JSONResponse(server.answer(await server.batcher.submit(inputs)))

    async def explain(request: Request) -> JSONResponse:
        body, kind = await body_of(request), request.headers.get("content-type", "")
        return JSONResponse(await asyncio.to_thread(server.explain, body, kind))

    async def match(request: Request) -> JSONResponse:
        return JSONResponse(await asyncio.to_thread(server.match, await body_of(request)))

    async def examples(request: Request) -> JSONResponse:
        if server.examples is None:
            server.examples = await asyncio.to_thread(server.find_examples)
            # (built while the page waits for a first input, not at its first search)
            asyncio.get_running_loop().run_in_executor(None, server.state_index)
        return JSONResponse(server.examples)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batching = asyncio.create_task(server.batcher.serve_forever())
        yield
        batching.cancel()

    return Starlette(
        routes=[
            Route("/", lambda request: HTMLResponse(page)),
            Route(
                "/health", lambda request: JSONResponse({"status": "ok", **server.batcher.counts})
            ),
            Route("/model", lambda request: JSONResponse(model_info(server.trained))),
            Route("/examples", examples),
            Route("/predict", predict, methods=["POST"]),
            Route("/explain", explain, methods=["POST"]),
            Route("/match", match, methods=["POST"]),
        ],
        exception_handlers={BadRequest: refused, Exception: failed},
        lifespan=lifespan,
    )


def serve(
    folder: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Serve the model in ``folder`` until stopped (Ctrl-C or SIGTERM: requests in flight are
    answered first)."""
    import uvicorn

    app = create_app(folder, settings)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(
            f"elman: warning: serving on {host}: the model is reachable from the network, "
            "with no authentication"
        )
    # The socket is bound here, so that port 0 (any free port) can be told as the real one.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({error.strerror}): give another --port"
        ) from None
    listening.listen(2048)  # (connections wait in its queue until uvicorn accepts them)
    port = listening.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    log(f"Serving {folder} on http://{shown}:{port} (Ctrl-C stops)")
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30)
    uvicorn.Server(config).run(sockets=[listening])
