"""Videos and caches in object storage (S3, GCS, Azure, HTTP) through fsspec: URLs, listing,
change detection by what the store says of an object, local copies (``vidcache[cloud]``)."""
