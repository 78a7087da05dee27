"""Drawing, on matplotlib's headless backend: the one atomic figure writer (figures.py), panels of kept tokens
and fast-path locations (panels.py), and the pictures of segmentation and detection results (dense.py) that
those tasks name as theirs. Imports nothing of the package but ``core``."""
