"""Stage one: fill a cache with the features of videos.

``local`` runs on this machine (decode, the backbone, the writer); ``ray_engine`` spreads
the same work over a Ray cluster; ``report`` shows progress and the summary.
"""
