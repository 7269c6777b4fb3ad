-- wrk script: POST the bytes of $WRK_BODY_FILE with Content-Type $WRK_CONTENT_TYPE,
-- and print one machine-readable line (WRK_JSON {...}) when the run is done.
--
--   WRK_BODY_FILE=row.csv WRK_CONTENT_TYPE=text/csv \
--     wrk -t1 -c8 -d10s -s bench/post.lua http://127.0.0.1:8080/invocations
--
-- The request is built once (no request() function), so wrk sends it at full speed.
local body_file = os.getenv("WRK_BODY_FILE")
if not body_file then
  error("set WRK_BODY_FILE to the file holding the request body")
end
local handle = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = handle:read("*a")
handle:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "text/csv"
wrk.headers["Accept"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"lat_mean_us":%.1f,"lat_max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
