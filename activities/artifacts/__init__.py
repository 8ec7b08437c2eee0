"""Model artifacts in S3 or Cloud Storage: verify a version in a region, restore it from the
archive, sync it between regions.

activities.py holds the activities; verify.py, archive.py (with tiers.py) and sync.py what
each does; objects.py the store interface and `Location`, with one store per module (s3.py,
gcs.py; their failures in s3_errors.py, gcs_errors.py) and stores.py building them from their
clients (drill evidence uses them too); copies.py the copies inside S3,
rewrites.py inside Cloud Storage, streams.py between the two (copies_state.py what a copy in
flight heartbeats); progress.py heartbeats and resumption; manifest.py the manifest format
and describe.py how a prefix is described as one.
"""
