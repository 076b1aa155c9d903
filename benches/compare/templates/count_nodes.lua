-- The warm-up of every run runs this wrk script: it counts responses per
-- x-demo-node header, so every run shows where its requests really went.
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
    local node = "status" .. status
    for k, v in pairs(headers) do
        if string.lower(k) == "x-demo-node" then node = v end
    end
    counts[node] = (counts[node] or 0) + 1
end
function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts") or {}) do total[k] = (total[k] or 0) + v end
    end
    local keys = {}
    for k in pairs(total) do table.insert(keys, k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do table.insert(parts, k .. "=" .. total[k]) end
    io.write("NODES " .. table.concat(parts, " ") .. "\n")
end
