"""The video side of stage one: find sources, decode them, choose and fit their frames.

- ``discover``: find videos (files or folders of numbered frames) and their labels.
- ``videoinfo``: what a file's container says (streams, rates, durations), checked.
- ``decode``: open a video or frame folder and iterate its frames lazily.
- ``decodeplan``: seek to the frames a sparse sampling keeps instead of decoding all.
- ``framefolder``: folders of numbered frames as videos.
- ``sampling``: decide which frames to keep (``--fps``, ``--num-frames``, ``--max-frames``).
- ``transform``: fit a frame to the backbone's square input (resize and crop policy).
- ``frames``: sampled and fitted frames of an open video (sampling + transform together).
"""
