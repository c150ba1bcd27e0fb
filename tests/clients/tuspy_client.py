"""Uploads each file given on the command line with tuspy, printing one JSON object:
{"uploads": [{path, url, resumed_from}]}. A path prefixed with "resume:" is uploaded one
chunk, dropped, and resumed by a new uploader from its stored URL. Chunks carry
Upload-Checksum (sha1), so the server's checksum extension is exercised by a real client.

Usage: python3 tuspy_client.py ENDPOINT TOKEN CHUNK_SIZE [resume:]PATH...
"""
import json
import os
import sys

from tusclient import client


def main():
    endpoint, token, chunk_size, *paths = sys.argv[1:]
    chunk_size = int(chunk_size)
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    results = []
    for arg in paths:
        resume = arg.startswith("resume:")
        path = arg[len("resume:"):] if resume else arg
        metadata = {"filename": os.path.basename(path)}
        uploader = tus.uploader(path, chunk_size=chunk_size, metadata=metadata, upload_checksum=True)
        resumed_from = 0
        if resume:
            uploader.upload_chunk()
            url = uploader.url
            uploader = tus.uploader(path, url=url, chunk_size=chunk_size, metadata=metadata, upload_checksum=True)
            resumed_from = uploader.offset
            if uploader.url != url:
                raise SystemExit("resumed into a new upload")
        uploader.upload()
        results.append({"path": path, "url": uploader.url, "resumed_from": resumed_from})
    print(json.dumps({"uploads": results}))


if __name__ == "__main__":
    main()
