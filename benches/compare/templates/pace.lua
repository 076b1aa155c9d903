-- The measured run's script when RATE is set (run.sh): requests leave on a
-- schedule instead of as soon as a connection is free, so that every
-- balancer is offered the same load and its latency is taken at that load
-- instead of at the load side's limit.
--
-- Each wrk thread keeps one schedule of send times, a Poisson stream of
-- PACE_RATE requests per second (exponential gaps, so bursts come and go
-- as with real clients, alike for every balancer). A connection that has
-- its response asks for the next free time on the schedule and waits
-- until then (wrk's delay()); one that is behind sends at once. The
-- connections are the most requests in flight: below saturation, the
-- offered rate is PACE_RATE whatever the latency.
--
-- wrk waits in whole milliseconds, so each wait is rounded up or down at
-- random in proportion, which keeps the mean. The clock is the monotonic
-- one, read through LuaJIT's FFI (wrk gives its scripts no clock).
local ffi = require("ffi")
ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } pace_timespec;
    int clock_gettime(int clock, pace_timespec *ts);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("pace_timespec")
local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("PACE_RATE") or "")
if not rate or rate <= 0 then
    error("pace.lua: PACE_RATE must be a positive number of requests per second")
end
local gap = 1000 / rate   -- mean ms between two sends of this thread
local slot                -- the last send time handed out, ms

function init(args)
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function delay()
    local now = now_ms()
    slot = (slot or now) - gap * math.log(1 - math.random())
    local wait = slot - now
    if wait <= 0 then
        return 0
    end
    local whole = math.floor(wait)
    if math.random() < wait - whole then
        whole = whole + 1
    end
    return whole
end
