"""What a person looks at: the kept tokens of image files (viz.py) and the browser page (app.py)."""
