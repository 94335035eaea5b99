"""A trained run on new videos: features made exactly as the run's, then the task's
output, for whole videos or frame by frame (``predict --stream``)."""
