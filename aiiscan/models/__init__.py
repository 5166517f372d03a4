"""Models: the frozen backbone, how it runs, the head files, the head kinds and the scorer."""
