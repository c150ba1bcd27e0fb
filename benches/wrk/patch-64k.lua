-- wrk script for scripts/sustained-patches: 64 KiB PATCHes appended to one upload, each at
-- the offset the previous answer gave (UPLOAD: the upload's path, TOKEN: a bearer token).
local body = string.rep("x", 65536)
local offset = 0
local token = os.getenv("TOKEN")
local path = os.getenv("UPLOAD")

request = function()
  return wrk.format("PATCH", path, {
    ["Tus-Resumable"] = "1.0.0",
    ["Content-Type"] = "application/offset+octet-stream",
    ["Upload-Offset"] = tostring(offset),
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

response = function(status, headers, _)
  -- actix writes header names in lower case
  for name, value in pairs(headers) do
    if string.lower(name) == "upload-offset" then offset = tonumber(value) end
  end
  if status ~= 204 then
    print("unexpected status " .. status)
    wrk.thread:stop()
  end
end
