"""Write the OpenAPI document of the HTTP API to docs/openapi.json (or the path given).

    .venv/bin/python scripts/export_openapi.py [PATH]

The document is built in code (views/openapi.py); a unit test fails when the file in the
repository and the code disagree, so run this after changing the API.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from views.openapi import render  # noqa: E402


def main(argv: list[str]) -> int:
    target = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "openapi.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
