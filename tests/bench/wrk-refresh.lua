-- wrk script: refresh-token rotation under load. Each response's new refresh token is
-- used by a later request, so no token is presented twice (a reuse would revoke the login).
-- env: WRK_AUTH (Authorization header), WRK_TOKENS (file: one refresh token a line, at
-- least one per connection), WRK_THREADS (wrk's -t), WRK_LIB (wrk-post.lua, for `done`).
dofile(os.getenv("WRK_LIB"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local pool = {}
function init(args)
  local threads = tonumber(os.getenv("WRK_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("WRK_TOKENS")) do
    if i % threads == id then pool[#pool + 1] = line end
    i = i + 1
  end
end

function request()
  local token = table.remove(pool) or "exhausted"
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then pool[#pool + 1] = token end
end
