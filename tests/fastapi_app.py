"""A FastAPI app written as users write it, served by ``qsup serve --app tests.fastapi_app:app``:
each endpoint adds a task without awaiting it, so only the dependency's commit stands between
the endpoint's return and the response."""

from fastapi import Depends, FastAPI

from qsup import chain, step
from qsup.fastapi import QueuedTasks, QueuedTasksDep, qsup_lifespan, queued_tasks
from tests.tasks import add

app = FastAPI(lifespan=qsup_lifespan)


@app.get("/ping")
async def ping() -> str:
    return "pong"


@app.post("/depends")
async def with_depends(tasks: QueuedTasks = Depends(QueuedTasks)) -> dict:
    return {"task_id": str(tasks.add_task(add, 1, 2).task_id)}


@app.post("/annotated")
async def with_annotated(tasks: QueuedTasksDep) -> dict:
    return {"task_id": str(tasks.add_task(add, 3, 4).task_id)}


@app.post("/legacy")
async def with_legacy(tasks: QueuedTasks = Depends(queued_tasks)) -> dict:
    return {"task_id": str(tasks.add_task(add, 5, 6).task_id)}


@app.post("/raises")
async def raises(tasks: QueuedTasksDep) -> dict:
    tasks.add_task(add, 7, 8)
    raise RuntimeError("the endpoint failed after adding a task")


@app.post("/workflow")
async def workflow(tasks: QueuedTasksDep) -> dict:
    wf = await tasks.add_workflow(chain(step(add, 1, 2), step(add, 10)))
    return {"workflow_id": str(wf.workflow_id), "task_ids": [str(i) for i in wf.task_ids]}
