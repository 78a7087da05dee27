"""Weights: checkpoint reading and writing, the release's layouts, and the zoo of released models."""
