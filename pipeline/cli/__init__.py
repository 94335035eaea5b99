"""The command line: thin click commands that map options onto the library.

``main`` holds the ``vidcache`` group and the commands about runs; the other modules one
group of commands each (``extract``, ``cache``, ``npy``); ``common`` and ``options`` what
they share. Errors from the core (``features.errors.VidcacheError``) become one
``Error: ...`` line.
"""

from vidcache.pipeline.cli.main import cli, extract_features_command, train_rnn_script

__all__ = ["cli", "extract_features_command", "train_rnn_script"]
