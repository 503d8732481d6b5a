"""What a fresh interpreter has loaded after an import: the guard on start-up costs."""

import json
import subprocess
import sys


def loaded_after(modules: list[str], candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` a new Python process holds after importing `modules`."""
    probe = (
        f"import json, sys; import {', '.join(modules)}; "
        f"print(json.dumps(sorted(m for m in {candidates!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)
