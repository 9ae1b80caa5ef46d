"""The composition root of `tektra run`: start everything, wait for a signal, stop everything.

For now it holds the model manager with the default model loaded and ready; the capture
pipelines, MQTT and the socket join here as they land.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from daemon.config.schema import TektraConfig
from daemon.manager.manager import UnifiedModelManager

log = logging.getLogger("tektra")


def run(config: TektraConfig, path: Path) -> int:
    logging.basicConfig(
        level=config.daemon.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_serve(config, path))


async def _serve(config: TektraConfig, path: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    manager = UnifiedModelManager(config, config_path=path)
    try:
        model_id = config.default_model_id
        if model_id is not None:
            backend = await manager.load_model(model_id)
            log.info("model %s loaded on %s", model_id, backend)
        log.info("tektra %s ready (config %s)", config.daemon.node_id, path)
        await stop.wait()
        log.info("stopping")
    finally:
        await manager.close()
    return 0
