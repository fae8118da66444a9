"""The API follows @champion on its own: a replica that POST /reload never reached catches up."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from mlops_services.serving.watcher import follow_champion
from mlops_services.settings import Settings


class Holder:
    def __init__(self, serving: str | None) -> None:
        self.current = SimpleNamespace(version=serving, drift_detected=False, drifted_share=0.0) if serving else None
        self.reloads = 0

    def start_reload(self) -> bool:
        self.reloads += 1
        self.current = SimpleNamespace(version="2", drift_detected=False, drifted_share=0.0)  # as a real reload would load
        return True


def follow(holder: Holder, answers: list[object], polls: int) -> None:
    def resolve(_: Settings) -> str:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, tuple) else (str(answer), False, 0.0)

    async def run() -> None:
        task = asyncio.create_task(follow_champion(holder, Settings(model_poll_seconds=0.01), resolve))  # type: ignore[arg-type]
        await asyncio.sleep(0.01 * polls + 0.05)
        task.cancel()

    asyncio.run(run())


def test_a_replica_with_no_model_loads_the_champion_once_there_is_one():
    holder = Holder(None)
    follow(holder, [LookupError("no alias champion"), LookupError("no alias champion"), "2"], polls=6)
    assert holder.reloads == 1 and holder.current.version == "2"


def test_a_moved_alias_reloads_and_an_unchanged_one_does_not():
    moved, same = Holder("1"), Holder("2")
    follow(moved, ["2"], polls=5)
    follow(same, ["2"], polls=5)
    assert (moved.reloads, same.reloads) == (1, 0)


def test_a_new_drift_verdict_on_the_same_version_reloads():
    holder = Holder("2")
    follow(holder, [("2", True, 0.4)], polls=3)
    assert holder.reloads >= 1


def test_an_unreachable_registry_keeps_the_served_model():
    holder = Holder("1")
    follow(holder, [ConnectionError("MLflow away")], polls=5)
    assert holder.reloads == 0 and holder.current.version == "1"
