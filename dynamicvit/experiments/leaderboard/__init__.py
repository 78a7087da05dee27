"""The field's leaderboards: every method and DynamicViT variant on three token grids, each with a converged
teacher, rows that resume, per-image results and paired intervals (:mod:`.paired`)."""

from dynamicvit.experiments.leaderboard.board import Board, open_board
from dynamicvit.experiments.leaderboard.entries import Entry, entries, get_entry
from dynamicvit.experiments.leaderboard.proxies import PROXIES, Proxy, get_proxy, proxy_config, proxy_teacher

__all__ = [
    "PROXIES",
    "Board",
    "Entry",
    "Proxy",
    "entries",
    "get_entry",
    "get_proxy",
    "open_board",
    "proxy_config",
    "proxy_teacher",
]
