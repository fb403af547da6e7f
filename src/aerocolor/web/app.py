"""The web app: one page to colorize an aerial photo, and the JSON API behind it.

The API (documented at ``/docs``): ``GET /api/models``, ``POST /api/jobs`` (upload),
``GET /api/jobs/{id}`` (status and progress), then the gray input and the colour results as
PNG or, for georeferenced inputs, GeoTIFF.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from .. import __version__
from ..infer.colorizer import DEFAULT_TILE
from ..infer.reference import ReferenceError
from .catalog import REFERENCE_ID, ModelCatalog
from .jobs import DONE, Job, JobStore, QueueFull
from .results import GRAY_PNG, colorize_job, job_reference, result_geotiff, result_png, store_reference, store_upload
from .uploads import UploadError, display_name

STATIC = Path(str(resources.files("aerocolor") / "web" / "static"))
# Room for the multipart envelope around the file itself.
MULTIPART_SLACK = 64 * 1024
MIN_SATURATION, MAX_SATURATION = 0.0, 2.0  # the saturation a job may ask for, times the model's


@dataclass
class WebSettings:
    models_dir: Path | None = None
    with_default: bool = True
    device: str = "auto"
    workers: int = 2
    queue_size: int = 32
    keep_seconds: float = 3600.0
    clean_every: float | None = None
    max_upload_bytes: int = 200 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_samples: int = 8
    tile: int = DEFAULT_TILE
    work_dir: Path | None = None


class ModelInfo(BaseModel):
    id: str
    method: str
    color_mode: str
    multimodal: bool
    reference: bool
    default: bool


class ResultLinks(BaseModel):
    png: str
    geotiff: str | None


class JobInfo(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float
    error: str | None
    name: str
    model: str
    width: int
    height: int
    samples: int
    seed: int
    georeferenced: bool
    reference_strength: float | None
    notes: list[str]
    gray: str
    results: list[ResultLinks]
    expires_in: float | None


class Health(BaseModel):
    status: str
    version: str
    workers: int
    queue_size: int
    jobs: dict[str, int]


class Problem(BaseModel):
    detail: str


ERRORS = {413: {"model": Problem, "description": "file or image too large"},
          415: {"model": Problem, "description": "not a PNG, JPEG or TIFF"},
          422: {"model": Problem, "description": "corrupt file or bad parameter"},
          503: {"model": Problem, "description": "queue full; see the Retry-After header"}}
NOT_FOUND = {404: {"model": Problem, "description": "no such job (or it has expired)"}}


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413: at once from its Content-Length, or
    as soon as that many bytes have arrived."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await self.refuse(send)
        received = 0
        exceeded = False

        async def counted_receive():
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                exceeded = True
                raise HTTPException(413)
            return message

        async def guarded_send(message):
            if not exceeded:  # the app's own answer to a cut-off body is replaced by ours
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            await self.refuse(send)

    async def refuse(self, send) -> None:
        mb = self.max_bytes / 2**20
        body = json.dumps({"detail": f"upload too large: this server accepts files up to "
                                     f"{mb:.0f} MB; crop or compress the image"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


@dataclass
class WebContext:
    settings: WebSettings
    catalog: ModelCatalog
    store: JobStore
    decoding: asyncio.Semaphore


def context(request: Request) -> WebContext:
    return request.app.state.web


def job_info(web: WebContext, job: Job) -> JobInfo:
    base = f"/api/jobs/{job.id}"
    results = [ResultLinks(png=f"{base}/results/{i}.png",
                           geotiff=f"{base}/results/{i}.tif" if job.georeferenced else None)
               for i in range(job.samples)] if job.state == DONE else []
    return JobInfo(id=job.id, state=job.state, progress=round(job.progress, 4), error=job.error,
                   name=job.name, model=job.model, width=job.width, height=job.height,
                   samples=job.samples, seed=job.seed, georeferenced=job.georeferenced, notes=job.notes,
                   reference_strength=job.reference_strength,
                   gray=f"{base}/gray.png", results=results,
                   expires_in=web.store.expires_in(job))


def find_job(request: Request, job_id: str) -> Job:
    job = context(request).store.get(job_id)
    if job is None:
        raise HTTPException(404, "no such job; results are kept for a limited time, "
                                 "upload the image again")
    return job


def finished_sample(request: Request, job_id: str, index: int) -> Job:
    job = find_job(request, job_id)
    if job.state != DONE:
        raise HTTPException(409, f"the job is {job.state}; wait until it is done")
    if not 0 <= index < job.samples:
        raise HTTPException(404, f"no sample {index}; this job has {job.samples}")
    return job


def download_name(job: Job, index: int, suffix: str) -> str:
    return f"{job.name}_color{f'_{index + 1}' if job.samples > 1 else ''}{suffix}"


router = APIRouter(prefix="/api")


@router.get("/health", response_model=Health)
def health(request: Request) -> Health:
    web = context(request)
    return Health(status="ok", version=__version__, workers=web.store.workers,
                  queue_size=web.store.queue_size, jobs=web.store.counts())


@router.get("/models", response_model=list[ModelInfo])
def models(request: Request) -> list[ModelInfo]:
    """The models this server offers; one is the default."""
    return [ModelInfo(**m) for m in context(request).catalog.describe()]


@router.post("/jobs", status_code=202, response_model=JobInfo, responses=ERRORS)
async def create_job(
    request: Request,
    image: UploadFile = File(..., description="PNG, JPEG, TIFF or GeoTIFF; colour becomes gray"),
    model: str | None = Form(None, description="a model id from /api/models (default: default)"),
    samples: int = Form(1, description="how many different colourings (multimodal models)"),
    restore: bool = Form(False, description="repair dust, hairs, scratches, blotches and holes first"),
    reference: UploadFile | None = File(None, description="optional colour reference: a georeferenced "
                                        "orthophoto of the same place (placed on a georeferenced image), "
                                        "or any colour image (its palette); needs a reference model"),
    reference_strength: float = Form(1.0, description="0..1: how strongly the colours follow the reference"),
    saturation: float = Form(1.0, description=f"{MIN_SATURATION}..{MAX_SATURATION}: colour saturation, "
                             "times the model's own (1: as the model gives it)"),
) -> JobInfo:
    """Upload an image and queue its colorization; poll the job until its state is done."""
    web = context(request)
    if reference is not None and not reference.filename:
        reference = None  # an empty file field of a form
    model_id = model or (REFERENCE_ID if reference is not None and REFERENCE_ID in web.catalog.entries
                         else web.catalog.default_id)
    if model_id not in web.catalog.entries:
        raise HTTPException(422, f"unknown model {model_id!r}; choose one of "
                                 f"{', '.join(web.catalog.entries)}")
    if reference is not None:
        check_reference_request(web, model_id, reference_strength)
    if not MIN_SATURATION <= saturation <= MAX_SATURATION:
        raise HTTPException(422, f"saturation {saturation}: must be between {MIN_SATURATION} and {MAX_SATURATION}")
    multimodal = web.catalog.entries[model_id].multimodal
    top = web.settings.max_samples if multimodal else 1
    if not 1 <= samples <= top:
        raise HTTPException(422, f"samples {samples}: must be between 1 and {top}"
                                 + ("" if multimodal else f" (model {model_id!r} gives one colouring)"))
    try:
        web.store.check_room()
        job_id, folder = web.store.reserve()
    except QueueFull as e:
        raise HTTPException(503, str(e), headers={"Retry-After": str(e.retry_after)}) from None
    name = display_name(image.filename)
    try:
        async with web.decoding:
            upload = await run_in_threadpool(store_upload, image.file, folder, name,
                                             web.settings.max_pixels)
            if reference is not None:
                await run_in_threadpool(store_reference, reference.file, folder,
                                        display_name(reference.filename), web.settings.max_pixels)
        job = Job(id=job_id, folder=folder, name=name, model=model_id,
                  samples=samples if multimodal else 1, width=upload.gray.shape[1],
                  height=upload.gray.shape[0], seed=secrets.randbits(63),
                  georeferenced=upload.georeferenced, notes=upload.notes, restore=restore, saturation=saturation,
                  reference_strength=reference_strength if reference is not None else None)
        if reference is not None:  # a reference that cannot be used is refused now, with its reason
            scale = web.catalog.colorizer(model_id).config.model.reference.scale
            async with web.decoding:
                await run_in_threadpool(job_reference, job, scale, job.notes.append)
        web.store.submit(job)
    except (UploadError, ReferenceError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(getattr(e, "status", 422), str(e)) from None
    except QueueFull as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(503, str(e), headers={"Retry-After": str(e.retry_after)}) from None
    return job_info(web, job)


def check_reference_request(web: WebContext, model_id: str, strength: float) -> None:
    """A reference needs a model that takes one, and a strength in 0..1 (422 otherwise)."""
    if not web.catalog.entries[model_id].reference:
        takers = [e.id for e in web.catalog.entries.values() if e.reference]
        raise HTTPException(422, f"model {model_id!r} takes no colour reference; "
                                 + (f"choose {', '.join(takers)}" if takers else "this server has no reference model"))
    if not 0.0 <= strength <= 1.0:
        raise HTTPException(422, f"reference_strength {strength}: must be between 0 and 1")


@router.get("/jobs/{job_id}", response_model=JobInfo, responses=NOT_FOUND)
def job_status(request: Request, job_id: str) -> JobInfo:
    """State, progress (0 to 1) and, once done, the links to the results."""
    return job_info(context(request), find_job(request, job_id))


@router.get("/jobs/{job_id}/gray.png", response_class=FileResponse, responses=NOT_FOUND)
def gray_image(request: Request, job_id: str) -> FileResponse:
    """The gray image that was colorized (colour uploads are shown converted)."""
    job = find_job(request, job_id)
    return FileResponse(job.folder / GRAY_PNG, media_type="image/png")


@router.get("/jobs/{job_id}/results/{index}.png", response_class=FileResponse, responses=NOT_FOUND)
def result_as_png(request: Request, job_id: str, index: int) -> FileResponse:
    """Colour sample ``index`` as PNG."""
    job = finished_sample(request, job_id, index)
    return FileResponse(result_png(job.folder, index), media_type="image/png",
                        filename=download_name(job, index, ".png"))


@router.get("/jobs/{job_id}/results/{index}.tif", response_class=FileResponse, responses=NOT_FOUND)
def result_as_geotiff(request: Request, job_id: str, index: int) -> FileResponse:
    """Colour sample ``index`` as GeoTIFF with the input's CRS, transform, nodata and mask."""
    job = finished_sample(request, job_id, index)
    if not job.georeferenced:
        raise HTTPException(409, "the input was not georeferenced; download the PNG instead")
    return FileResponse(result_geotiff(job.folder, index), media_type="image/tiff",
                        filename=download_name(job, index, ".tif"))


def create_app(settings: WebSettings | None = None) -> FastAPI:
    """The app with its models, job queue and worker threads (stopped when the app shuts down)."""
    settings = settings or WebSettings()
    catalog = ModelCatalog(settings.models_dir, settings.device, settings.with_default)
    own_dir = settings.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="aerocolor-web-")) if own_dir else settings.work_dir
    store = JobStore(work_dir, lambda job: colorize_job(job, catalog, settings.tile),
                     settings.workers, settings.queue_size, settings.keep_seconds,
                     settings.clean_every)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        store.close()
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)

    app = FastAPI(title="aerocolor", version=__version__, lifespan=lifespan,
                  description="Colorize historical grayscale aerial photographs.")
    app.state.web = WebContext(settings, catalog, store, asyncio.Semaphore(settings.workers))
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_SLACK)
    return app
