"""What a person looks at: pictures of the kept tokens, segmentation and detection (viz.py), the browser page
(app.py) and the one figure writer behind every plot (figures.py)."""
