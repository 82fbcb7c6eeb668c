"""A FastAPI app that enqueues work: ``uvicorn examples.fastapi_app:app`` beside
``qsup serve --import examples.tasks``."""

from fastapi import Depends, FastAPI

from examples.tasks import add
from qsup.fastapi import QueuedTasks, queued_tasks

app = FastAPI()


@app.post("/add")
async def enqueue_add(a: int, b: int, tasks: QueuedTasks = Depends(queued_tasks)) -> dict:
    ref = tasks.add_task(add, a, b)
    return {"task_id": str(await ref.get_task_id())}


@app.post("/add-many")
async def enqueue_many(count: int, tasks: QueuedTasks = Depends(queued_tasks)) -> dict:
    refs = [tasks.add_task(add, i, i) for i in range(count)]
    return {"task_ids": [str(r.task_id) for r in refs]}  # committed before the response leaves
