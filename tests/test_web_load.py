"""A small load test of the web app: many uploads at once, and a full queue that says so."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
from PIL import Image
from servers import app_in_thread, fetch_image, wait_done

from aerocolor.web import WebSettings

USERS = 20
SIZE = 512


def aerial_crops(shared_data, n: int) -> list[bytes]:
    """``n`` different 512x512 PNG crops of real aerial photos (600x600 maps tiles)."""
    files = sorted((shared_data / "color/val/maps").glob("*.jpg"))[:n]
    crops = []
    for path in files:
        buf = io.BytesIO()
        Image.open(path).convert("RGB").crop((0, 0, SIZE, SIZE)).save(buf, format="PNG")
        crops.append(buf.getvalue())
    return crops


async def post_together(url: str, images: list[bytes]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(images))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        return await asyncio.gather(*(
            client.post("/api/jobs", files={"image": (f"crop{i}.png", img)},
                        data={"model": "tiny.pt"}) for i, img in enumerate(images)))


def test_twenty_users_at_once_all_get_results(web_server, shared_data):
    responses = asyncio.run(post_together(web_server, aerial_crops(shared_data, USERS)))
    assert [r.status_code for r in responses] == [202] * USERS, [r.text for r in responses]
    for response in responses:
        job = wait_done(web_server, response.json()["id"], timeout=120)
        assert job["state"] == "done", job
        assert fetch_image(web_server + job["results"][0]["png"]).shape == (SIZE, SIZE, 3)


def test_full_queue_answers_503_with_retry_after(web_models, shared_data):
    # one worker, two places in the queue; 256-pixel tiles make a job outlast the uploads
    settings = WebSettings(models_dir=web_models, with_default=False, device="cpu", workers=1,
                           queue_size=2, tile=256)
    images = aerial_crops(shared_data, USERS)
    with app_in_thread(settings) as url:
        responses = asyncio.run(post_together(url, images))
        codes = [r.status_code for r in responses]
        assert set(codes) == {202, 503}, codes
        for refused in (r for r in responses if r.status_code == 503):
            assert int(refused.headers["Retry-After"]) >= 1
            assert "queue is full" in refused.json()["detail"]
        for accepted in (r for r in responses if r.status_code == 202):
            assert wait_done(url, accepted.json()["id"], timeout=120)["state"] == "done"
        health = httpx.get(f"{url}/api/health").json()
        assert health["status"] == "ok" and health["jobs"]["failed"] == 0
        assert health["jobs"]["done"] == codes.count(202)
        again = httpx.post(f"{url}/api/jobs", files={"image": ("again.png", images[0])},
                           data={"model": "tiny.pt"})
        assert again.status_code == 202
        result = wait_done(url, again.json()["id"])["results"][0]["png"]
        assert np.any(fetch_image(url + result))
