"""``elman serve``: a saved model behind HTTP, and a page that shows it reading.

Starlette (the ASGI toolkit FastAPI is built on) served by uvicorn. The routes:

    GET  /          the page (``elman/web/index.html``: no CDN, works offline)
    GET  /health    {"status": "ok"}
    GET  /model     the model's settings, classes and test scores (metrics.json)
    GET  /examples  a few reviews of the test split, when the model's data is at hand
    POST /predict   {"texts": [...]} (text models), {"values": [[[...]]]} (numeric, N×T×F),
                    or a WAV body (speech) -> {"predictions": [{"label", "probability"}]}
    POST /explain   {"text": "..."} -> words, P(positive) after each, changes, states (T×H)

Concurrent /predict requests are gathered into batches (``Batcher``): each request's inputs are
encoded on its own, then the model runs once on everything that arrived within ``wait`` seconds
(at most ``max_batch`` rows). A bad request gets a 4xx whose JSON ``error`` says what was wrong
and what to do; the server stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from elman.errors import UserError

SMALL_BODY = 32_000  # bytes: requests this small are encoded on the event loop (~50 µs)


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
    """Gathers the arrays of concurrent requests into batches for ``run`` (rows in, one output
    row per input row out), one batch at a time, in a worker thread."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int, wait: float):
        self.run, self.max_batch, self.wait = run, max_batch, wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.counts = {"requests": 0, "batches": 0}  # how well requests were gathered

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
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
                outputs = await asyncio.to_thread(self.run, np.concatenate([r for r, _ in waiting]))
            except Exception as error:  # the model failed: every waiting request hears it
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for rows, future in waiting:
                if not future.done():
                    future.set_result(outputs[start : start + len(rows)])
                start += len(rows)


def model_info(trained) -> dict:
    """What ``GET /model`` says: source, classes, sizes, training and test scores."""
    config = asdict(trained.config)
    scores = {k: v for k, v in trained.metrics.items() if k != "report"}
    return {
        "source": trained.config.source,
        "classes": trained.config.classes,
        "task": trained.model.task,
        "model": config["model"],
        "train": config["train"],
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
        run = trained.forecast if self.forecasts else trained.probabilities
        self.batcher = Batcher(run, settings.max_batch, settings.wait)
        self.examples: list[dict] | None = None

    def inputs(self, body: bytes) -> np.ndarray:
        """The request's rows for the model: ids (N, T) or values (N, T, F)."""
        if self.source.upload is not None:  # a file as the body (speech: a WAV recording)
            if not body:
                raise BadRequest(422, "send the file (a WAV recording) as the request body")
            try:
                return self.source.upload(self.trained, body)
            except (UserError, RuntimeError, ValueError, OSError) as error:
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
            try:
                return self.trained.encode(items)
            except UserError as error:
                raise BadRequest(422, str(error)) from None
        return self._values(items)

    def _values(self, items: list) -> np.ndarray:
        try:
            values = np.asarray(items, dtype=np.float32)
        except (TypeError, ValueError):
            raise BadRequest(
                422, '"values" must be numbers: a list of series, each a list of steps'
            ) from None
        if values.ndim == 2:  # one feature: steps given as plain numbers
            values = values[..., None]
        width = self.trained.config.model.input_size
        if values.ndim != 3 or values.shape[2] != width:
            raise BadRequest(
                422, f'"values" must be N series × T steps × {width} features, got shape '
                f"{list(values.shape)}"
            )  # fmt: skip
        return values

    def answer(self, outputs: np.ndarray) -> dict:
        from elman.bundle import to_predictions

        if self.forecasts:  # the next value of each series, (N, F)
            return {"forecasts": outputs.tolist()}
        predictions = to_predictions(outputs, self.trained.config.classes)
        return {"predictions": [asdict(p) for p in predictions]}

    def explain(self, body: bytes) -> dict:
        from elman.analysis.explain import read_word_by_word

        payload = parse_json(body)
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(422, 'send a JSON object with "text": one non-empty review')
        if not self.reads_text:
            raise BadRequest(422, "explain reads text: this model reads numbers")
        try:
            reading = read_word_by_word(self.trained, text)
        except UserError as error:
            raise BadRequest(422, str(error)) from None

        def finite(value: float) -> float | None:  # (the start token cut off: no "before")
            return None if math.isnan(value) else value

        return {
            "words": reading.words,
            "probabilities": reading.probabilities,
            "changes": [finite(change) for change in reading.changes()],
            "start_probability": finite(reading.start_probability),
            "states": reading.states,
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


async def read_body(request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is known to be over ``limit`` bytes:
    from its declared length before reading, else while reading."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body is over {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the body is over {limit:,} bytes")
        chunks.append(chunk)
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

    from elman.bundle import load

    settings = settings or ServeSettings()
    server = Server(load(folder), settings)
    page = (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")

    async def body_of(request: Request) -> bytes:
        return await read_body(request, settings.max_body_bytes)

    async def predict(request: Request) -> JSONResponse:
        body = await body_of(request)
        if len(body) < SMALL_BODY:  # a few reviews: encoded here, quicker than a thread hop
            rows = server.inputs(body)
        else:
            rows = await asyncio.to_thread(server.inputs, body)
        return JSONResponse(server.answer(await server.batcher.submit(rows)))

    async def explain(request: Request) -> JSONResponse:
        return JSONResponse(await asyncio.to_thread(server.explain, await body_of(request)))

    async def examples(request: Request) -> JSONResponse:
        if server.examples is None:
            read = server.source.examples or (lambda trained, count: [])
            server.examples = await asyncio.to_thread(read, server.trained, 6)
        return JSONResponse({"examples": server.examples})

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
    log(f"Serving {folder} on http://{host}:{port} (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
