"""Follow the registry's @champion: every replica of the API reloads when the alias moves.

POST /reload reaches one replica behind a Service, and none while no replica is ready (a new
platform has no champion yet, so no replica is). Each replica therefore also asks the registry
for the alias's version now and then, and reloads when it differs from the one it serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..registry import CHAMPION, client_for
from ..settings import Settings
from .loader import ModelHolder

log = logging.getLogger(__name__)


def champion_version(settings: Settings) -> str:
    return str(client_for(settings).get_model_version_by_alias(settings.model_name, CHAMPION).version)


async def follow_champion(holder: ModelHolder, settings: Settings, resolve: Callable[[Settings], str] = champion_version) -> None:
    """Runs until cancelled; a registry that cannot be reached is asked again next time."""
    while True:
        await asyncio.sleep(settings.model_poll_seconds)
        try:
            version = await asyncio.to_thread(resolve, settings)
        except Exception as error:  # no champion yet, or MLflow away: keep serving what we have
            log.debug("champion lookup failed: %s", error)
            continue
        serving = holder.current.version if holder.current else None
        if version != serving and holder.start_reload():
            log.info("@champion is v%s (serving %s): reloading", version, serving)
