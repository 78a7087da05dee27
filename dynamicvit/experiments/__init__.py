"""Experiments that train: methods compared at matched MACs (compare.py), the end-to-end demo (demo.py), a
dense teacher trained until it converges (teacher.py), the leaderboards (leaderboard/), their reports
(report.py) and the kept-item overlap (item_overlap.py). The only part of the package above ``train``."""
