"""A FastAPI app that enqueues work: ``qsup serve --import examples.tasks --app
examples.fastapi_app:app`` (one process tree), or ``uvicorn examples.fastapi_app:app`` beside
``qsup serve --import examples.tasks``."""

from fastapi import Depends, FastAPI

from examples.tasks import add
from qsup.fastapi import QueuedTasks, QueuedTasksDep, qsup_lifespan

app = FastAPI(lifespan=qsup_lifespan)


@app.post("/add")
async def enqueue_add(a: int, b: int, tasks: QueuedTasks = Depends(QueuedTasks)) -> dict:
    ref = tasks.add_task(add, a, b)
    return {"task_id": str(await ref.get_task_id())}


@app.post("/add-many")
async def enqueue_many(count: int, tasks: QueuedTasksDep) -> dict:
    refs = [tasks.add_task(add, i, i) for i in range(count)]
    return {"task_ids": [str(r.task_id) for r in refs]}  # committed before the response leaves
