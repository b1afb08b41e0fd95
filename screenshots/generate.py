"""Write SVG screenshots of portmon's main views from the fake collector: run after every UI change.

    python screenshots/generate.py            # writes screenshots/*.svg

Fake data, a fixed clock and UTC times, so the pictures only change when the UI does.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from portmon.actions.binds import simulated_binder  # noqa: E402
from portmon.collect.fake import (  # noqa: E402
    DEMO_TIME,
    ScriptedCollector,  # noqa: E402
    demo_process,
    demo_snapshot,
    demo_snapshot_after,
)
from portmon.ui.app import PortmonApp  # noqa: E402
from portmon.ui.owners import DemoOwnership  # noqa: E402

# name: (terminal size, snapshots to play, keys to press, app options)
VIEWS: dict[str, tuple[tuple[int, int], list[Any], Sequence[str], dict[str, Any]]] = {
    "main": ((160, 40), [demo_snapshot(), demo_snapshot_after()], ["r"], {}),
    "detail": ((160, 40), [demo_snapshot()], ["down"] * 4 + ["d"], {}),
    "filtered": ((160, 24), [demo_snapshot()], [], {"filter_text": "state:listen !proc:nginx"}),
    "narrow": ((80, 24), [demo_snapshot(), demo_snapshot_after()], ["r"], {}),
    "narrow-detail": ((80, 24), [demo_snapshot()], ["down"] * 22 + ["enter"], {}),
    "scan-error": ((120, 20), [demo_snapshot(), RuntimeError("netlink socket closed")], ["r"], {}),
    "help": ((120, 44), [demo_snapshot()], ["question_mark"], {}),
    "events": ((160, 40), [demo_snapshot(), demo_snapshot_after()], ["r", "e"], {}),
    # The "why" dialog on the dev server's listener (row 19), its test binds simulated from the demo sockets.
    "why": ((160, 40), [demo_snapshot()], ["down"] * 18 + ["w"],
            {"binder": simulated_binder(demo_snapshot().sockets), "privileged": True}),
}


async def shoot(
    name: str, size: tuple[int, int], steps: list[Any], keys: Sequence[str], options: dict[str, Any]
) -> Path:
    """Run one view headless and save its SVG."""
    app = PortmonApp(
        ScriptedCollector(steps), poll=False, clock=lambda: DEMO_TIME + 1.0, process_reader=demo_process,
        ownership=DemoOwnership(), **options
    )
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause()
        path = HERE / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(HERE))
    return path


def main(names: Sequence[str]) -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    for name in names or VIEWS:
        size, steps, keys, options = VIEWS[name]
        print(asyncio.run(shoot(name, size, steps, keys, options)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
