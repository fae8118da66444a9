"""Follow the registry's @champion: every replica of the API reloads when the alias moves.

POST /reload reaches one replica behind a Service, and none while no replica is ready (a new
platform has no champion yet, so no replica is). Each replica therefore also asks the registry
for the alias's version and its drift verdict now and then, and reloads when either differs
from what it serves (a new verdict on the same version changes the drift metrics).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..registry import CHAMPION, client_for, drift_verdict
from ..settings import Settings
from .loader import ModelHolder

log = logging.getLogger(__name__)


Champion = tuple[str, bool, float]  # version, drift detected, share of features drifted


def champion_version(settings: Settings) -> Champion:
    registered = client_for(settings).get_model_version_by_alias(settings.model_name, CHAMPION)
    return (str(registered.version), *drift_verdict(registered.tags))


async def follow_champion(holder: ModelHolder, settings: Settings, resolve: Callable[[Settings], Champion] = champion_version) -> None:
    """Runs until cancelled; a registry that cannot be reached is asked again next time."""
    while True:
        await asyncio.sleep(settings.model_poll_seconds)
        try:
            version = await asyncio.to_thread(resolve, settings)  # with its drift verdict
        except Exception as error:  # no champion yet, or MLflow away: keep serving what we have
            log.debug("champion lookup failed: %s", error)
            continue
        current = holder.current
        serving = (current.version, current.drift_detected, current.drifted_share) if current else None
        if version != serving and holder.start_reload():
            log.info("@champion is %s (serving %s): reloading", version, serving)
