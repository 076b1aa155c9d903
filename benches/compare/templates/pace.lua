-- The measured run's script when RATE is set (run.sh): after each response,
-- a connection waits a think time before its next request, drawn from an
-- exponential distribution of mean PACE_MS milliseconds, so that every
-- balancer is offered about the same load (CONNECTIONS / PACE_MS requests
-- per millisecond, less the latency's share) and its latency is taken at
-- that load instead of at the load side's limit. Exponential think times
-- make each connection's requests a Poisson stream: bursts come and go as
-- with real clients, alike for every balancer.
--
-- wrk schedules a delay in whole milliseconds, so each draw is rounded up
-- or down at random in proportion, which keeps the mean exact.
local mean = tonumber(os.getenv("PACE_MS") or "")
if not mean or mean <= 0 then
    error("pace.lua: PACE_MS must be a positive number of milliseconds")
end

function init(args)
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function delay()
    local d = -mean * math.log(1 - math.random())
    local whole = math.floor(d)
    if math.random() < d - whole then
        whole = whole + 1
    end
    return whole
end
