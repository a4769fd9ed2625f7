"""Data sets: generators, loaders for public sets, and the external ``.npz`` format."""
