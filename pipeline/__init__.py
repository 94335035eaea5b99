"""vidcache's command line and orchestration, one sub-package per job.

- ``cli``: the click commands, their shared options and output formatting.
- ``extraction``: stage one, the local and Ray engines that fill a cache.
- ``training``: stage two (and three, ``e2e``): the skeleton every task runs on, the
  fitting loop, distribution, run folders, and ``tasks/`` (one module per task).
- ``inference``: a trained run on new videos, whole or frame by frame.
"""

from vidcache import __version__

__all__ = ["__version__"]
