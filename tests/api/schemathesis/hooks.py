"""What Schemathesis needs to be told about Hoist: a tus chunk (application/offset+octet-stream)
is raw bytes on the wire, as an application/octet-stream body is."""

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
