"""The load of each scenario: the four analyzers' weights and the wrk Lua scripts that make
the requests (fresh packet ids each run)."""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS = {"a1": 4, "a2": 3, "a3": 2, "a4": 1}
# (k): the formats an analyzer may take that the distributor converts packets into.
CONVERTING = ("records", "elasticsearch", "loki", "otlp")
# Each wrk thread gets its number (`tid`) and counts its requests (`counter`).
LUA_THREADS = """
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
"""
# wrk's request generator: PACKETS packets a request, each of MIN..MAX messages, unique ids.
LUA = (
    LUA_THREADS
    + """
function init(args)
  math.randomseed(tid * 7919 + 17)
end
local message = '{"ts":"2026-01-01T00:00:00Z","level":"INFO","service":"bench",' ..
  '"host":"wrk","message":"hello"}'
local lists = {}
local list = message
for n = 1, MAX do
  lists[n] = list
  list = list .. "," .. message
end
request = function()
  local lines = {}
  for i = 1, PACKETS do
    counter = counter + 1
    local id = RUN .. '-' .. tid .. '-' .. counter
    local n = MIN
    if MAX > MIN then n = math.random(MIN, MAX) end
    lines[i] = '{"packetId":"' .. id .. '","emitter":"wrk","messages":[' .. lists[n] .. ']}'
  end
  return wrk.format("POST", PATH, HEADERS, table.concat(lines, "\\n"))
end
"""
)


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    path: str
    ctype: str
    packets: int
    messages: tuple[int, int]

    def lua(self, run: str, close: bool = False) -> str:
        """wrk's script; with `close`, each request asks for its connection to be closed
        (every request a new connection: handshakes/s)."""
        lo, hi = self.messages
        closing = ', ["Connection"] = "close"' if close else ""
        head = (
            f'RUN = "{run}"\nPATH = "{self.path}"\n'
            f'HEADERS = {{["Content-Type"] = "{self.ctype}"{closing}}}\n'
            f"PACKETS = {self.packets}\nMIN = {lo}\nMAX = {hi}\n"
        )
        return head + LUA


SCENARIOS = {
    "a": Scenario(
        "a", "1-message packets on /log-packet", "/log-packet", "application/json", 1, (1, 1)
    ),
    "b": Scenario(
        "b",
        "packets of 1-100 messages on /log-packet",
        "/log-packet",
        "application/json",
        1,
        (1, 100),
    ),
    "c": Scenario(
        "c",
        "NDJSON, 100 packets x 10 messages a request",
        "/log-packets",
        "application/x-ndjson",
        100,
        (10, 10),
    ),
}


# What nginx and HAProxy answer a registration with in scenario (d) (logdist's lease figures).
REGISTERED = '{"lease":60,"renew":20}'
