"""The yardstick: a bare FastAPI app with one async JSON route (and, for the webhook row, a
receiver that takes every delivery)."""

from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


@app.post("/hook", status_code=204)
async def hook() -> Response:
    return Response(status_code=204)
