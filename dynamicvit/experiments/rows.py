"""An experiment's finished rows on disk: one JSON file per row, written atomically the moment it is done, so
a killed or interrupted experiment (a leaderboard, a comparison, a schedule search) resumes where it stopped
and never repeats or half-writes a row. The folder records the recipe it was started with; a rerun with
another recipe is refused in one line before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dynamicvit.core.files import atomic_write_text, fault_point

__all__ = ["RowStore"]


class RowStore:
    """The rows of one experiment in ``folder/rows``, and the recipe in ``folder/recipe.json``.

    Args:
        folder: the experiment's folder.
        recipe: what every row shares (data, teacher, schedule); compared with the folder's.
        defaults: the value of a field the folder's recipe lacks (a config field added since the board started
            counts as unchanged at its default).
        start_over: drop the folder's rows and recipe first (``--overwrite``).
        renamed: former key → today's, for a recipe saved before a field was renamed.
    """

    def __init__(
        self,
        folder: str | Path,
        recipe: dict,
        defaults: dict | None = None,
        start_over: bool = False,
        renamed: dict[str, str] | None = None,
    ):
        self.folder = Path(folder)
        self.rows_dir = self.folder / "rows"
        recipe_file = self.folder / "recipe.json"
        if start_over:
            shutil.rmtree(self.rows_dir, ignore_errors=True)
            recipe_file.unlink(missing_ok=True)
        if recipe_file.exists():
            written = {(renamed or {}).get(k, k): v for k, v in json.loads(recipe_file.read_text()).items()}
            saved = {**(defaults or {}), **written}
            changed = sorted(k for k in {*saved, *recipe} if saved.get(k) != recipe.get(k))
            if changed:
                shown = ", ".join(f"{k} {saved.get(k)!r} → {recipe.get(k)!r}" for k in changed[:4])
                raise ValueError(
                    f"{self.folder} holds a run with another recipe ({shown}); pass another --out or remove it"
                )
        else:
            atomic_write_text(recipe_file, json.dumps(recipe, indent=2, sort_keys=True))
        self.recipe = recipe

    def path(self, key: str) -> Path:
        return self.rows_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        """Whether the row ``key`` is finished."""
        return self.path(key).exists()

    def write(self, key: str, row: dict) -> None:
        """Write the finished row ``key`` atomically."""
        atomic_write_text(self.path(key), json.dumps(row, indent=1))
        fault_point("row")

    def read(self, key: str) -> dict:
        return json.loads(self.path(key).read_text())

    def all(self) -> list[dict]:
        """Every finished row, in file-name order."""
        return [json.loads(p.read_text()) for p in sorted(self.rows_dir.glob("*.json"))]
