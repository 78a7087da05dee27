"""Tasks: classification, segmentation and detection, each behind one contract."""
