"""Model artifacts in S3: verify a version in a region, restore it from the Glacier archive,
sync it between regions.

activities.py holds the activities; verify.py, archive.py (with tiers.py) and sync.py what
each does; copies.py the (multipart, resumable) copies; objects.py the S3 reads and writes
they share, s3_errors.py S3's failures, progress.py heartbeats and resumption; manifest.py
the manifest format and describe.py how a prefix is described as one.
"""
